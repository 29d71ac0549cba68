//! Connection limit with hysteresis (HAProxy `maxconn`): at the limit, listeners stop accepting;
//! they resume once the count falls below 90 % of it, so a node at capacity does not flap
//! between accepting and refusing on every closed connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Shared by every listener of a node.
#[derive(Debug)]
pub struct ConnLimit {
    max: usize,
    resume_below: usize,
    active: AtomicUsize,
    paused: AtomicBool,
    resumed: Notify,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit {
    limit: Arc<ConnLimit>,
}

impl ConnLimit {
    /// A limit of `max` concurrent connections.
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(ConnLimit {
            max,
            resume_below: (max * 9 / 10).max(1),
            active: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
        })
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The configured limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits until a connection may be accepted, then counts it.
    pub async fn acquire(self: &Arc<Self>) -> ConnPermit {
        loop {
            let notified = self.resumed.notified();
            if !self.paused.load(Ordering::Acquire) {
                let now = self.active.fetch_add(1, Ordering::AcqRel) + 1;
                if now >= self.max {
                    self.paused.store(true, Ordering::Release);
                }
                if now <= self.max {
                    return ConnPermit {
                        limit: self.clone(),
                    };
                }
                // Lost a race with another listener: give the slot back and wait.
                self.release();
            }
            notified.await;
        }
    }

    /// Counts one more connection (or HTTP/2 stream) at once if there is room, without
    /// waiting: `None` at the limit, or while paused (until below 90 %), like the accept
    /// loops. Callers refuse the work instead of queueing it.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnPermit> {
        let mut now = self.active.load(Ordering::Acquire);
        loop {
            if now >= self.max || self.paused.load(Ordering::Acquire) {
                return None;
            }
            match self.active.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => now = actual,
            }
        }
        if now + 1 >= self.max {
            self.paused.store(true, Ordering::Release);
        }
        Some(ConnPermit {
            limit: self.clone(),
        })
    }

    fn release(&self) {
        let now = self.active.fetch_sub(1, Ordering::AcqRel) - 1;
        if now < self.resume_below && self.paused.swap(false, Ordering::AcqRel) {
            self.resumed.notify_waiters();
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limit.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn try_acquire_refuses_at_the_limit_and_pauses_accepting() {
        let limit = ConnLimit::new(3);
        let held = limit.acquire().await;
        let a = limit.try_acquire().expect("room for a second");
        let b = limit.try_acquire().expect("room for a third");
        assert!(limit.try_acquire().is_none(), "refused at the limit");
        assert_eq!(limit.active(), 3);
        // Accepting is paused too: a waiting accept does not get a slot.
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        drop(a);
        assert!(limit.try_acquire().is_none(), "2 of 3 is not below 90 %");
        drop((b, held));
        let p = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("resumed")
            .expect("task");
        assert_eq!(limit.active(), 1);
        drop(p);
    }

    #[tokio::test]
    async fn pauses_at_limit_and_resumes_below_ninety_percent() {
        let limit = ConnLimit::new(10);
        let mut permits = Vec::new();
        for _ in 0..10 {
            permits.push(limit.acquire().await);
        }
        assert_eq!(limit.active(), 10);
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        // At 9 open (90 %) it must still wait: resumes only below 9.
        permits.pop();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), async {
                while !waiter.is_finished() {
                    tokio::task::yield_now().await
                }
            })
            .await
            .is_err()
        );
        permits.pop();
        let p = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("resumed")
            .expect("task");
        assert_eq!(limit.active(), 9);
        drop(p);
        drop(permits);
        assert_eq!(limit.active(), 0);
    }
}
