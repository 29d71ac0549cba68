//! `mode: tcp` frontends: pick a server of the backend (retrying other servers when a connect
//! fails), then copy bytes both ways until both sides close or the tunnel idles out.
//!
//! Data flow: accepted socket -> [`serve`] -> `upstream::connect` -> `pipe::run` with the
//! frontend's, backend's and server's counters. A client for which no server can be reached is
//! closed at once (there is no protocol to say why).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::Frontend;
use super::counters::inc;
use super::pipe::{self, PipeTimeouts};
use super::upstream::{ConnectPlan, connect};
use crate::runtime::ConnPermit;

/// Serves one client of a TCP frontend.
pub async fn serve(fe: Arc<Frontend>, client: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let _fe_session = fe.counters.open();
    let Some(backend) = fe
        .config
        .backend
        .or(fe.config.publish_backend)
        .and_then(|i| fe.backend(i))
    else {
        return;
    };
    let set = backend.servers();
    let plan = ConnectPlan {
        preferred: None,
        client: peer.ip(),
        timeout: fe.timeouts.connect,
        pooled: false,
    };
    let upstream = match connect(backend, &set, plan).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(frontend = %fe.config.name, backend = %backend.name, %peer, error = %e, "no server reachable; closing");
            return;
        }
    };
    let _be_session = backend.counters.open();
    let _srv_session = upstream.server.counters.open();
    let timeouts = PipeTimeouts {
        idle: fe.timeouts.tunnel,
        client_fin: fe.timeouts.client_fin,
    };
    let counters = [&fe.counters, &backend.counters, &upstream.server.counters];
    match pipe::run(
        client,
        upstream.stream,
        b"",
        b"",
        timeouts,
        &counters,
        &fe.shutdown,
    )
    .await
    {
        Ok(end) => tracing::debug!(frontend = %fe.config.name, %peer, ?end, "tcp session ended"),
        Err(e) => {
            inc(&fe.counters.request_errors);
            tracing::debug!(frontend = %fe.config.name, %peer, error = %e, "tcp session failed");
        }
    }
}
