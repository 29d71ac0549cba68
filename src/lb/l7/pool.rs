//! Idle keep-alive connections to one server, reused by later requests (on by default; a
//! backend with `http_server_close: true` never parks connections here).
//!
//! Data flow: after a response that leaves the upstream connection reusable, the connection
//! task [`Pool::put`]s it; the next request to that server [`Pool::take`]s the most recently
//! parked one (LIFO keeps few connections warm), skipping connections that have been idle too
//! long or that the server has closed or written to meanwhile. A connection is only reused
//! on the LB thread that opened it: its socket is registered with that thread's event loop, so
//! using it elsewhere would route every wake-up through another thread.

use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Idle connections kept per server; more are closed. HTTP/2 clients multiplex many requests
/// on one connection, each needing its own HTTP/1.1 upstream connection while in flight: 50
/// clients with 10 streams each keep ~500 busy, and a smaller pool closed and reopened an
/// upstream connection every few requests. (HAProxy's `pool-max-conn` is unlimited by default;
/// `MAX_IDLE_TIME` bounds how long any of these stay open.)
pub const MAX_IDLE_PER_SERVER: usize = 2048;
/// An idle connection older than this is closed rather than reused: servers close idle
/// connections on their own schedule (nginx after 75 s), and reusing one they are closing
/// fails the request.
pub const MAX_IDLE_TIME: Duration = Duration::from_secs(15);

/// Idle connections to one server.
/// One parked connection.
struct Idle {
    stream: TcpStream,
    /// When it was parked.
    since: Instant,
    /// The thread whose event loop polls it.
    thread: ThreadId,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.len()).finish()
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A Vec of sockets stays valid after any panic.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live idle connection parked by this thread, if there is one.
    pub fn take(&self) -> Option<TcpStream> {
        loop {
            let here = std::thread::current().id();
            let (stream, since) = {
                let mut idle = self.lock();
                let i = idle.iter().rposition(|c| c.thread == here)?;
                let c = idle.remove(i);
                (c.stream, c.since)
            };
            if since.elapsed() > MAX_IDLE_TIME {
                continue;
            }
            // An idle connection must have nothing to read: EOF means the server closed it,
            // data means it broke the protocol. Either way it cannot carry a request.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
    }

    /// Parks a connection whose last response ended cleanly.
    pub fn put(&self, stream: TcpStream) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE_PER_SERVER {
            idle.push(Idle {
                stream,
                since: Instant::now(),
                thread: std::thread::current().id(),
            });
        }
    }

    /// Closes every idle connection (the server went DOWN or left).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn skips_connections_the_server_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let a = TcpStream::connect(addr).await.unwrap();
        let (_server_a, _) = listener.accept().await.unwrap();
        let a_local = a.local_addr().unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let (mut server_b, _) = listener.accept().await.unwrap();
        server_b.shutdown().await.unwrap();
        // b has now seen the server's FIN.
        b.readable().await.unwrap();
        pool.put(a);
        pool.put(b);
        let taken = pool.take().expect("a is alive");
        assert_eq!(
            taken.local_addr().unwrap(),
            a_local,
            "b (closed by the server) is skipped"
        );
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn connections_are_reused_only_on_the_thread_that_parked_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = std::sync::Arc::new(Pool::default());
        let a = TcpStream::connect(addr).await.unwrap();
        let (_server_a, _) = listener.accept().await.unwrap();
        pool.put(a);
        let other = pool.clone();
        let elsewhere = std::thread::spawn(move || other.take().is_some())
            .join()
            .unwrap();
        assert!(!elsewhere, "another thread does not get it");
        assert!(pool.take().is_some(), "the parking thread does");
    }
}
