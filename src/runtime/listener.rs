//! Binding and accept loops.
//!
//! Binding happens before anything is served so that a failed bind stops the process with the
//! node, listener and address named. An accept loop takes a [`ConnPermit`] first (maxconn), then
//! accepts, then spawns the handler as a connection task that owns the permit; it stops on
//! drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::limit::{ConnLimit, ConnPermit};
use super::shutdown::Shutdown;

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("node {node}: cannot bind listener {listener} on {addr}: {source}")]
pub struct BindError {
    /// Node name.
    pub node: String,
    /// Listener name.
    pub listener: String,
    /// Address.
    pub addr: SocketAddr,
    /// OS error.
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener.
pub async fn bind_tcp(
    node: &str,
    listener: &str,
    addr: SocketAddr,
) -> Result<TcpListener, BindError> {
    let err = |source| BindError {
        node: node.into(),
        listener: listener.into(),
        addr,
        source,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    // Restarting a node must not wait for TIME_WAIT sockets of the previous run.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

/// Binds a UDP socket (the QUIC relay).
pub fn bind_udp(
    node: &str,
    listener: &str,
    addr: SocketAddr,
) -> Result<std::net::UdpSocket, BindError> {
    std::net::UdpSocket::bind(addr).map_err(|source| BindError {
        node: node.into(),
        listener: listener.into(),
        addr,
        source,
    })
}

/// The address a bound listener really has (port 0 resolved).
pub fn local_addr(
    node: &str,
    listener: &str,
    addr: SocketAddr,
    l: &TcpListener,
) -> Result<SocketAddr, BindError> {
    l.local_addr().map_err(|source| BindError {
        node: node.into(),
        listener: listener.into(),
        addr,
        source,
    })
}

/// Runs an accept loop until drain. `handle` gets each connection and its permit.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    limit: Arc<ConnLimit>,
    own: Option<Arc<ConnLimit>>,
    shutdown: Shutdown,
    name: String,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr, ConnPermit) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        // This listener's own limit first, so a full frontend holds no slot of the node's.
        let own_permit = match &own {
            Some(own) => tokio::select! {
                p = own.acquire() => Some(p),
                () = shutdown.draining() => break,
            },
            None => None,
        };
        let permit = tokio::select! {
            p = limit.acquire() => p,
            () = shutdown.draining() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.draining() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(listener = %name, %peer, error = %e, "set_nodelay failed");
                }
                let served = handle(stream, peer, permit);
                shutdown.spawn_connection(async move {
                    let _own = own_permit;
                    served.await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the loop goes on.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                drop((permit, own_permit));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = shutdown.draining() => break,
                }
            }
        }
    }
    tracing::debug!(listener = %name, "stopped accepting");
}
