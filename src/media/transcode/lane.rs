//! A serial lane of work on the shared rayon pool: items go into a bounded queue and are
//! processed in order, one at a time, by the lane's [`Stage`] (a decoder, or one rendition's
//! scaler and encoder).
//!
//! Pushing never blocks: a full queue hands the item back and the caller applies its drop policy.
//! While the queue is not empty exactly one pool job is scheduled for the lane; the job
//! processes one item and, if more are queued, re-schedules itself at the back of the pool's
//! FIFO, so that lanes sharing the pool take turns instead of one lane holding a thread until its
//! queue runs dry. Closing a lane drops what it has queued; the item in progress finishes.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use rayon::ThreadPool;

/// What a lane runs.
pub trait Stage: Send + 'static {
    /// One unit of work.
    type Item: Send + 'static;
    /// Processes one item (on a pool thread).
    fn process(&mut self, item: Self::Item);
}

/// Why an item was not queued; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The lane was closed.
    Closed(T),
}

#[derive(Debug)]
struct Queue<T> {
    items: VecDeque<T>,
    /// A pool job for this lane exists (queued or running).
    scheduled: bool,
    closed: bool,
}

/// A serial, bounded lane of work.
pub struct Lane<S: Stage> {
    queue: Mutex<Queue<S::Item>>,
    /// Locked only by the lane's single job, so never contended.
    stage: Mutex<S>,
    capacity: usize,
    pool: Arc<ThreadPool>,
    name: String,
}

impl<S: Stage> std::fmt::Debug for Lane<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S: Stage> Lane<S> {
    /// A lane of at most `capacity` queued items, run on `pool`. `name` is for logs.
    pub fn new(stage: S, capacity: usize, pool: Arc<ThreadPool>, name: String) -> Arc<Self> {
        Arc::new(Lane {
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(capacity.max(1)),
                scheduled: false,
                closed: false,
            }),
            stage: Mutex::new(stage),
            capacity: capacity.max(1),
            pool,
            name,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue<S::Item>> {
        // The queue is consistent after every statement that could panic.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, scheduling the lane if it was idle.
    pub fn push(self: &Arc<Self>, item: S::Item) -> Result<(), Rejected<S::Item>> {
        let mut q = self.lock();
        if q.closed {
            return Err(Rejected::Closed(item));
        }
        if q.items.len() >= self.capacity {
            return Err(Rejected::Full(item));
        }
        q.items.push_back(item);
        if !q.scheduled {
            q.scheduled = true;
            drop(q);
            self.schedule();
        }
        Ok(())
    }

    /// Items waiting (not counting the one in progress).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue's bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether nothing is queued or in progress.
    pub fn is_idle(&self) -> bool {
        let q = self.lock();
        q.items.is_empty() && !q.scheduled
    }

    /// Stops the lane: queued items are dropped, later pushes refused.
    pub fn close(&self) {
        let dropped = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(dropped);
    }

    /// Whether the lane was closed (by its owner, or after its stage panicked).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn schedule(self: &Arc<Self>) {
        let me = self.clone();
        self.pool.spawn_fifo(move || me.run_one());
    }

    fn run_one(self: Arc<Self>) {
        let item = {
            let mut q = self.lock();
            match q.items.pop_front() {
                Some(item) => item,
                None => {
                    q.scheduled = false;
                    return;
                }
            }
        };
        let outcome = {
            let mut stage = self.stage.lock().unwrap_or_else(|p| p.into_inner());
            std::panic::catch_unwind(AssertUnwindSafe(|| stage.process(item)))
        };
        if outcome.is_err() {
            tracing::error!(lane = %self.name, "transcode stage panicked; lane closed");
            self.close();
        }
        let mut q = self.lock();
        if q.items.is_empty() {
            q.scheduled = false;
        } else {
            drop(q);
            self.schedule();
        }
    }

    /// Runs `f` on the stage (for tests and for reading state between items).
    pub fn with_stage<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.stage.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    struct Recorder {
        out: mpsc::Sender<u32>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Stage for Recorder {
        type Item = u32;
        fn process(&mut self, item: u32) {
            if let Some(gate) = &self.gate {
                gate.recv_timeout(Duration::from_secs(10)).expect("gate");
            }
            if item == 666 {
                panic!("stage bug");
            }
            self.out.send(item).expect("test receiver");
        }
    }

    fn pool(n: usize) -> Arc<ThreadPool> {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn processes_in_order_one_at_a_time() {
        let (tx, rx) = mpsc::channel();
        let lane = Lane::new(
            Recorder {
                out: tx,
                gate: None,
            },
            1000,
            pool(4),
            "t".into(),
        );
        for i in 0..500 {
            lane.push(i).unwrap();
        }
        let got: Vec<u32> = (0..500)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn full_queue_hands_the_item_back_and_close_drops_the_rest() {
        let (tx, rx) = mpsc::channel();
        let (open, gate) = mpsc::channel();
        let lane = Lane::new(
            Recorder {
                out: tx,
                gate: Some(gate),
            },
            2,
            pool(1),
            "t".into(),
        );
        lane.push(1).unwrap();
        // Wait until item 1 is in progress (blocked on the gate), so the queue is empty.
        while !lane.is_empty() {
            std::thread::yield_now();
        }
        lane.push(2).unwrap();
        lane.push(3).unwrap();
        assert_eq!(lane.push(4), Err(Rejected::Full(4)));
        assert_eq!(lane.len(), 2);
        lane.close();
        assert_eq!(lane.push(5), Err(Rejected::Closed(5)));
        open.send(()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "2 and 3 were dropped"
        );
    }

    #[test]
    fn a_panicking_stage_closes_its_lane_only() {
        let (tx, rx) = mpsc::channel();
        let p = pool(1);
        let lane = Lane::new(
            Recorder {
                out: tx.clone(),
                gate: None,
            },
            10,
            p.clone(),
            "bad".into(),
        );
        let other = Lane::new(
            Recorder {
                out: tx,
                gate: None,
            },
            10,
            p,
            "good".into(),
        );
        lane.push(666).unwrap();
        while !lane.is_closed() {
            std::thread::yield_now();
        }
        assert!(matches!(lane.push(1), Err(Rejected::Closed(1))));
        other.push(7).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            7,
            "the pool lives on"
        );
    }
}
