//! The bidirectional byte pipe behind `mode: tcp`, RTMP after routing and WebSocket after
//! `101`: bytes are copied both ways as they come, a half-close on one side is passed on to
//! the other (shutdown of the write side), and the pipe ends on inactivity.
//!
//! Data flow: two copy loops run concurrently (so neither direction can block the other),
//! each counting bytes into the counters it is given and stamping the last activity; a
//! watchdog ends the pipe after `tunnel` without traffic, or `client_fin` once the client has
//! half-closed. Bytes the caller had already read (pipelined after an upgrade, or replayed)
//! are written first.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::counters::{Counters, add};
use crate::runtime::Shutdown;

/// Copy buffer per direction.
const BUF: usize = 16 * 1024;
/// A direction whose reads fill the buffer (bulk transfer) grows it to this, for fewer and
/// larger reads and writes; quiet pipes (most RTMP players between bursts) keep [`BUF`].
const BULK_BUF: usize = 64 * 1024;

/// How a pipe ended.
#[derive(Debug, PartialEq, Eq)]
pub enum PipeEnd {
    /// Both sides closed.
    Closed,
    /// No traffic within the timeout.
    Timeout,
    /// The process stopped.
    Stopped,
}

/// Idle limits of a pipe.
#[derive(Debug, Clone, Copy)]
pub struct PipeTimeouts {
    /// Inactivity limit while both sides are open.
    pub idle: Duration,
    /// Inactivity limit once the client has half-closed.
    pub client_fin: Duration,
}

/// Copies between `client` and `server` until both are closed, a timeout, or stop. Bytes are
/// counted into every one of `counters`: `bytes_in` client -> server, `bytes_out` the other way.
#[allow(clippy::too_many_arguments)]
pub async fn run<C, S>(
    client: C,
    server: S,
    client_pending: &[u8],
    server_pending: &[u8],
    timeouts: PipeTimeouts,
    counters: &[&Arc<Counters>],
    shutdown: &Shutdown,
) -> io::Result<PipeEnd>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let client_done = std::sync::atomic::AtomicBool::new(false);
    let fin_seen = tokio::sync::Notify::new();
    let stamp = || last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);

    if !client_pending.is_empty() {
        sw.write_all(client_pending).await?;
        counters
            .iter()
            .for_each(|c| add(&c.bytes_in, client_pending.len() as u64));
    }
    if !server_pending.is_empty() {
        cw.write_all(server_pending).await?;
        counters
            .iter()
            .for_each(|c| add(&c.bytes_out, server_pending.len() as u64));
    }
    let up = async {
        copy(&mut cr, &mut sw, |n| {
            counters.iter().for_each(|c| add(&c.bytes_in, n));
            stamp();
        })
        .await?;
        client_done.store(true, Ordering::Relaxed);
        stamp();
        // The watchdog may be asleep on the longer tunnel limit: wake it to apply client_fin.
        fin_seen.notify_one();
        io::Result::Ok(())
    };
    let down = async {
        copy(&mut sr, &mut cw, |n| {
            counters.iter().for_each(|c| add(&c.bytes_out, n));
            stamp();
        })
        .await
    };
    let watchdog = async {
        loop {
            let limit = if client_done.load(Ordering::Relaxed) {
                timeouts.client_fin
            } else {
                timeouts.idle
            };
            let idle_since = Duration::from_millis(last.load(Ordering::Relaxed));
            let elapsed = start.elapsed();
            let deadline = idle_since + limit;
            if elapsed >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(deadline - elapsed) => {}
                () = fin_seen.notified() => {}
            }
        }
    };
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => r.map(|_| PipeEnd::Closed),
        () = watchdog => Ok(PipeEnd::Timeout),
        () = shutdown.stopped() => Ok(PipeEnd::Stopped),
    }
}

/// Copies until EOF, then shuts the writer down (passing the half-close on).
async fn copy<R, W>(r: &mut R, w: &mut W, mut counted: impl FnMut(u64)) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // The peer may already be gone; a failed shutdown changes nothing then.
            match w.shutdown().await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        w.write_all(&buf[..n]).await?;
        counted(n as u64);
        if n == buf.len() && buf.len() < BULK_BUF {
            buf.resize(BULK_BUF, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close_on() {
        let (client, mut client_peer) = duplex(64);
        let (server, mut server_peer) = duplex(64);
        let counters = Arc::new(Counters::default());
        let shutdown = Shutdown::new();
        let t = PipeTimeouts {
            idle: Duration::from_secs(60),
            client_fin: Duration::from_secs(60),
        };
        let pipe = tokio::spawn({
            let counters = counters.clone();
            let shutdown = shutdown.clone();
            async move { run(client, server, b"pre", b"", t, &[&counters], &shutdown).await }
        });
        client_peer.write_all(b"hello").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"prehello", "server sees EOF after the client's bytes");
        server_peer.write_all(b"reply").await.unwrap();
        server_peer.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(
            back, b"reply",
            "the other direction still flows after a half-close"
        );
        assert_eq!(pipe.await.unwrap().unwrap(), PipeEnd::Closed);
        let s = counters.snapshot();
        assert_eq!((s.bytes_in, s.bytes_out), (8, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_client_fin_timeouts() {
        let (client, _client_peer) = duplex(64);
        let (server, _server_peer) = duplex(64);
        let t = PipeTimeouts {
            idle: Duration::from_secs(10),
            client_fin: Duration::from_secs(1),
        };
        let started = tokio::time::Instant::now();
        let end = run(client, server, b"", b"", t, &[], &Shutdown::new())
            .await
            .unwrap();
        assert_eq!(end, PipeEnd::Timeout);
        assert_eq!(started.elapsed().as_secs(), 10);

        let (client, mut client_peer) = duplex(64);
        let (server, _server_peer) = duplex(64);
        client_peer.shutdown().await.unwrap();
        let started = tokio::time::Instant::now();
        let end = run(client, server, b"", b"", t, &[], &Shutdown::new())
            .await
            .unwrap();
        assert_eq!(end, PipeEnd::Timeout);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "client_fin applies after the client's FIN"
        );
    }
}
