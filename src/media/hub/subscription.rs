//! A subscriber of a hub: its place in the shared event log, the events it has taken, and the
//! skips the hub made it take.

use super::*;

/// A subscriber's place in the hub; dropping it leaves the hub.
#[derive(Debug)]
pub struct Subscription {
    pub(super) hub: Arc<Hub>,
    /// Index of its slot.
    pub(super) index: usize,
    /// Events taken from the hub, not yet returned: the start of the stream at first (the
    /// description and the start cache), then batches read from the log.
    pub(super) taken: VecDeque<HubEvent>,
    /// Skips of its slot as of the last batch taken, and as of the last [`Subscription::skipped`].
    pub(super) skips: u64,
    pub(super) skips_seen: u64,
}

/// Why [`Subscription::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing new yet.
    #[error("no event yet")]
    Empty,
    /// The hub disconnected the subscriber for staying behind.
    #[error("disconnected for staying behind")]
    Disconnected,
}

impl Subscription {
    /// The next event; `None` when the subscriber was disconnected for staying behind.
    pub async fn recv(&mut self) -> Option<HubEvent> {
        poll_fn(|cx| match self.take(Some(cx.waker())) {
            Ok(event) => Poll::Ready(Some(event)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        })
        .await
    }

    /// The next event if one is there: `Empty` when none is, `Disconnected` when the
    /// subscriber was dropped for staying behind.
    pub fn try_recv(&mut self) -> Result<HubEvent, TryRecvError> {
        self.take(None)
    }

    /// The next event; with nothing to read, `waker` (if any) is woken by the next event.
    pub(super) fn take(&mut self, waker: Option<&Waker>) -> Result<HubEvent, TryRecvError> {
        if let Some(event) = self.taken.pop_front() {
            return Ok(event);
        }
        let mut guard = self.hub.lock();
        let inner = &mut *guard;
        let Some(slot) = inner.slots.get_mut(self.index).and_then(Option::as_mut) else {
            return Err(TryRecvError::Disconnected);
        };
        match slot.state {
            SubState::Closed => return Err(TryRecvError::Disconnected),
            // Caught up with what it skipped: the next keyframe makes it live again.
            SubState::Skipping { ref mut read } => *read = true,
            SubState::Live => {
                let from = slot.cursor.max(inner.log_start);
                let start = (from - inner.log_start) as usize;
                let end = inner.log.len().min(start + READ_BATCH);
                self.taken.extend(inner.log.range(start..end).cloned());
                self.skips = slot.skips;
                // The log is trimmed by the next event the publisher appends (or when a
                // subscriber leaves): readers never pay for it.
                slot.cursor = from + (end - start) as u64;
            }
        }
        match self.taken.pop_front() {
            Some(event) => Ok(event),
            None => {
                if let Some(waker) = waker
                    && !slot.waker.as_ref().is_some_and(|w| w.will_wake(waker))
                {
                    slot.waker = Some(waker.clone());
                }
                Err(TryRecvError::Empty)
            }
        }
    }

    /// Whether events were skipped (the subscriber stayed behind) since the last call: the
    /// event just received is the first after the gap.
    pub fn skipped(&mut self) -> bool {
        std::mem::replace(&mut self.skips_seen, self.skips) != self.skips
    }

    /// The frames taken but not yet returned: at first, the start cache.
    pub fn cached(&self) -> impl Iterator<Item = &Frame> {
        self.taken.iter().filter_map(|e| match e {
            HubEvent::Frame(f) => Some(f),
            _ => None,
        })
    }

    /// The hub subscribed to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.index);
    }
}
