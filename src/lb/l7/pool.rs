//! Idle keep-alive connections to one server, reused by later requests (on by default; a
//! backend with `http_server_close: true` never parks connections here).
//!
//! Data flow: after a response that leaves the upstream connection reusable, the connection
//! task [`Pool::put`]s it; the next request to that server [`Pool::take`]s the most recently
//! parked one (LIFO keeps few connections warm), skipping connections that have been idle too
//! long or that the server has closed or written to meanwhile. A thread takes the connections
//! it parked itself first: their sockets are registered with its event loop. When it has none,
//! it takes another thread's and registers it with its own event loop.

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

    /// A live idle connection, preferably one parked by this thread. One parked by another
    /// thread is moved to this thread's event loop first (two `epoll_ctl` calls), so it is
    /// never polled from one thread and woken by another.
    pub fn take(&self) -> Option<TcpStream> {
        let here = std::thread::current().id();
        loop {
            let c = {
                let mut idle = self.lock();
                let i = match idle.iter().rposition(|c| c.thread == here) {
                    Some(i) => i,
                    None => idle.len().checked_sub(1)?,
                };
                idle.remove(i)
            };
            if c.since.elapsed() > MAX_IDLE_TIME {
                continue;
            }
            // An idle connection must have nothing to read: EOF means the server closed it,
            // data means it broke the protocol. Either way it cannot carry a request.
            let mut probe = [0u8; 1];
            match c.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => continue,
            }
            if c.thread == here {
                return Some(c.stream);
            }
            match c.stream.into_std().and_then(TcpStream::from_std) {
                Ok(stream) => return Some(stream),
                Err(e) => tracing::debug!(error = %e, "idle connection could not change threads"),
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
    async fn a_thread_takes_its_own_connections_first_then_moves_another_threads() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = std::sync::Arc::new(Pool::default());
        let mine = TcpStream::connect(addr).await.unwrap();
        let (_server_mine, _) = listener.accept().await.unwrap();
        let mine_local = mine.local_addr().unwrap();
        pool.put(mine);
        // Another thread, with its own event loop, parks a connection after ours.
        let (other_pool, theirs_local, mut server_theirs) = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let theirs = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
                    let (server, _) = l.accept().await.unwrap();
                    let local = theirs.local_addr().unwrap();
                    pool.put(theirs);
                    (pool, local, server.into_std().unwrap())
                })
            })
            .join()
            .unwrap()
        };
        let first = pool.take().expect("ours");
        assert_eq!(
            first.local_addr().unwrap(),
            mine_local,
            "own connection first"
        );
        let second = other_pool.take().expect("the other thread's");
        assert_eq!(second.local_addr().unwrap(), theirs_local);
        // It now works on this thread's event loop (its old one is gone with that thread).
        use std::io::Write as _;
        server_theirs.write_all(b"x").unwrap();
        second.readable().await.unwrap();
        let mut b = [0u8; 1];
        assert_eq!(second.try_read(&mut b).unwrap(), 1);
        assert!(pool.is_empty());
    }
}
