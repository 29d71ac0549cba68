//! The stats listener (`stats.bind`). It is bound and announced with the node's other
//! listeners so its address is stable; until the stats page, CSV and `/metrics` exist (issue
//! 4), it answers every request with the built-in 503 page, as HAProxy's stats listener does
//! for paths it does not serve.
//!
//! Data flow: accepted socket -> one request head read under `timeouts.client` -> 503 ->
//! close. [`LbView`] is what the page will render: every frontend and backend of the node,
//! whose counters and server states are read live.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Frontend;
use super::backend::Backend;
use crate::proto::http::{HeadLimits, RequestParser};
use crate::runtime::ConnPermit;

/// Everything the stats page shows: the node's frontends and backends.
#[derive(Debug, Clone)]
pub struct LbView {
    /// Frontends, in config order.
    pub frontends: Vec<Arc<Frontend>>,
    /// Backends, in config order.
    pub backends: Arc<[Arc<Backend>]>,
}

/// Serves one connection of the stats listener.
pub async fn serve(view: Arc<LbView>, mut stream: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let Some(fe) = view.frontends.first() else {
        return;
    };
    let timeout = fe.timeouts.client;
    let mut parser = RequestParser::new(HeadLimits::default());
    let mut buf = BytesMut::with_capacity(4096);
    let got_head = tokio::time::timeout(timeout, async {
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            match parser.parse(&buf) {
                Ok(Some(_)) => return true,
                Ok(None) => {}
                Err(_) => return true,
            }
        }
    })
    .await;
    if got_head != Ok(true) {
        return;
    }
    let page = fe.errors.page(503);
    if let Err(e) = tokio::time::timeout(timeout, stream.write_all(&page))
        .await
        .unwrap_or(Ok(()))
    {
        tracing::debug!(%peer, error = %e, "stats: write failed");
    }
}
