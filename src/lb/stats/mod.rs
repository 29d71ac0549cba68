//! The stats listener (`stats.bind`): HAProxy's stats page, its CSV export and `/metrics`.
//!
//! Data flow per connection: one request head read under `timeouts.client` -> the target
//! decides: `/metrics`, a target starting with `stats.uri` (the HTML page, or CSV with `;csv`;
//! `;up` hides servers that are not UP, `;norefresh` turns the page's auto-refresh off),
//! anything else 503 -> Basic credentials checked for the first two when `stats.auth` is set
//! (401 with the realm otherwise) -> the page and the CSV render the rows
//! [`model::LbObjects::collect`] reads from the live counters; `/metrics` encodes the node's
//! registry ([`NodeMetrics`]: build info, uptime, cluster store health, and the LB families
//! that `prom`'s collector reads from the same rows) -> one response, then the connection
//! closes.
//!
//! - `model`: the rows; `html`, `csv`: the page and the export; `prom`: the LB's families in
//!   the node's metrics registry.

pub mod csv;
pub mod html;
pub mod model;
pub mod prom;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::model::LbObjects;
use super::ErrorPages;
use crate::config::StatsConfig;
use crate::runtime::ConnPermit;
use crate::runtime::metrics::{self, NodeMetrics};
use streamfleet_proto::http::auth::parse_basic;
use streamfleet_proto::http::response::unauthorized;
use streamfleet_proto::http::{HeadLimits, RequestHead, RequestParser};

/// Largest request head the stats listener reads (a browser's or a scraper's GET).
const MAX_HEAD: usize = 16 * 1024;

/// Everything the stats listener shows and needs.
#[derive(Debug)]
pub struct LbView {
    /// Node name.
    pub node: String,
    /// Settings of the listener.
    pub config: StatsConfig,
    /// The frontends, backends and connection limit the page and the CSV read.
    pub objects: LbObjects,
    /// The node's registry (holding the LB families over the same objects): `/metrics`.
    pub metrics: NodeMetrics,
    /// When the node started.
    pub started: Instant,
    /// The node's error pages (503 for other paths).
    pub errors: Arc<ErrorPages>,
    /// `timeouts.client`: bounds reading the request and writing the answer.
    pub timeout: Duration,
}

/// What a request to the stats listener asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The HTML page.
    Html {
        /// `;norefresh`.
        norefresh: bool,
        /// `;up`.
        up_only: bool,
    },
    /// `;csv`.
    Csv {
        /// `;up`.
        up_only: bool,
    },
    /// `/metrics`.
    Metrics,
    /// Anything else: 503.
    Other,
}

/// Routes a request target: `/metrics` (its path, any query) first, then the `uri` prefix
/// with HAProxy's `;csv`, `;up` and `;norefresh` options anywhere after it.
pub fn route(target: &[u8], uri: &str) -> Page {
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/metrics" {
        return Page::Metrics;
    }
    let Some(rest) = target.strip_prefix(uri.as_bytes()) else {
        return Page::Other;
    };
    let mut csv = false;
    let mut up_only = false;
    let mut norefresh = false;
    for option in rest.split(|&b| b == b';').skip(1) {
        let word = option
            .split(|&b| matches!(b, b'?' | b'&' | b'/'))
            .next()
            .unwrap_or_default();
        match word {
            b"csv" => csv = true,
            b"up" => up_only = true,
            b"norefresh" => norefresh = true,
            _ => {}
        }
    }
    if csv {
        Page::Csv { up_only }
    } else {
        Page::Html { norefresh, up_only }
    }
}

/// Serves one connection of the stats listener.
pub async fn serve(view: Arc<LbView>, mut stream: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let timeout = view.timeout;
    let mut parser = RequestParser::new(HeadLimits {
        max_head_bytes: MAX_HEAD,
        ..HeadLimits::default()
    });
    let mut buf = BytesMut::with_capacity(4096);
    let head = tokio::time::timeout(timeout, async {
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match parser.parse(&buf) {
                Ok(Some(head)) => return Some(Ok(head)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    })
    .await;
    let response = match head {
        Ok(Some(Ok(head))) => answer(&view, &head),
        Ok(Some(Err(e))) => {
            tracing::debug!(%peer, error = %e, "stats: invalid request");
            view.errors.page(400)
        }
        Ok(None) | Err(_) => return,
    };
    if let Err(e) = tokio::time::timeout(timeout, stream.write_all(&response))
        .await
        .unwrap_or(Ok(()))
    {
        tracing::debug!(%peer, error = %e, "stats: write failed");
    }
    // Best effort: the client may already be gone.
    let _ = tokio::time::timeout(timeout, stream.shutdown()).await;
}

/// The whole response to one request.
pub fn answer(view: &LbView, head: &RequestHead) -> Bytes {
    let page = route(head.target(), &view.config.uri);
    if page == Page::Other {
        return view.errors.page(503);
    }
    if let Some((user, password)) = &view.config.auth {
        let ok = head
            .header_value(b"authorization")
            .and_then(|v| parse_basic(v).ok())
            .is_some_and(|c| c.matches(user.as_bytes(), password.expose().as_bytes()));
        if !ok {
            return unauthorized(&view.config.realm);
        }
    }
    let (content_type, body, refresh) = match page {
        Page::Metrics => (metrics::CONTENT_TYPE, view.metrics.render(), None),
        Page::Csv { up_only } => (
            "text/plain",
            csv::render(&view.objects.collect(), up_only),
            None,
        ),
        Page::Html { norefresh, up_only } => {
            let refresh = view.config.refresh.filter(|_| !norefresh);
            let info = html::PageInfo {
                node: &view.node,
                version: (!view.config.hide_version).then_some(env!("CARGO_PKG_VERSION")),
                uptime: view.started.elapsed(),
                connections: view.objects.limit.active(),
                maxconn: view.objects.maxconn(),
                uri: &view.config.uri,
                refresh,
                refresh_configured: view.config.refresh.is_some(),
                up_only,
            };
            (
                "text/html; charset=utf-8",
                html::render(&view.objects.collect(), &info),
                refresh,
            )
        }
        Page::Other => return view.errors.page(503),
    };
    let head_only = head.is_head_request();
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(b"HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\n");
    out.put_slice(
        format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if let Some(r) = refresh {
        out.put_slice(format!("Refresh: {}\r\n", r.as_secs().max(1)).as_bytes());
    }
    out.put_slice(b"\r\n");
    if !head_only {
        out.put_slice(body.as_bytes());
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_haproxy() {
        let uri = "/haproxy_stats";
        assert_eq!(route(b"/metrics", uri), Page::Metrics);
        assert_eq!(route(b"/metrics?x=1", uri), Page::Metrics);
        assert_eq!(
            route(b"/haproxy_stats", uri),
            Page::Html {
                norefresh: false,
                up_only: false
            }
        );
        assert_eq!(
            route(b"/haproxy_statsXYZ", uri),
            Page::Html {
                norefresh: false,
                up_only: false
            },
            "uri is a prefix"
        );
        assert_eq!(
            route(b"/haproxy_stats;csv", uri),
            Page::Csv { up_only: false }
        );
        assert_eq!(
            route(b"/haproxy_stats;up;csv;norefresh", uri),
            Page::Csv { up_only: true }
        );
        assert_eq!(
            route(b"/haproxy_stats;norefresh", uri),
            Page::Html {
                norefresh: true,
                up_only: false
            }
        );
        assert_eq!(route(b"/other", uri), Page::Other);
        assert_eq!(route(b"/haproxy_stat", uri), Page::Other);
        // HAProxy's default uri holds a query.
        assert_eq!(
            route(b"/haproxy?stats;csv", "/haproxy?stats"),
            Page::Csv { up_only: false }
        );
    }
}
