//! Putting a rendition's GOPs back in order on the edge.
//!
//! The origin sends each GOP on its own QUIC stream (newer ones first when the link is short),
//! and the edge reads the streams concurrently, so the first frames of GOP n+1 can reach the
//! pull task before the last frames of GOP n. Publishing one GOP after the other, each to its
//! end, keeps every frame in the origin's order, which the edge's HLS packager needs to write
//! the origin's bytes. A GOP that stays behind is given up instead of holding the stream: once
//! frames of two newer GOPs wait for it, or more than [`MAX_WAITING`] events, it is declared
//! late, its reader told to stop, and the next GOP goes on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Events of newer GOPs held while the current one finishes (about two seconds of 30 fps
/// video with audio).
pub const MAX_WAITING: usize = 160;

/// The GOPs of one rendition, put in order.
#[derive(Debug)]
pub struct GopOrder<T> {
    /// The GOP being published, and its reader's stop flag.
    current: Option<(u64, Arc<AtomicBool>)>,
    /// The newest GOP that was finished or given up: anything from it or older is late.
    done: Option<u64>,
    /// Events of newer GOPs, in arrival order, each with its GOP and reader's stop flag.
    waiting: VecDeque<(u64, Arc<AtomicBool>, Option<T>)>,
}

impl<T> Default for GopOrder<T> {
    fn default() -> Self {
        GopOrder {
            current: None,
            done: None,
            waiting: VecDeque::new(),
        }
    }
}

impl<T> GopOrder<T> {
    /// Takes `event` of GOP `gop` (`None`: the GOP's stream ended) whose reader stops when
    /// `stop` is set; appends what can be published now, in order, to `ready`. Returns how
    /// many GOPs were given up as late.
    pub fn push(
        &mut self,
        gop: u64,
        stop: &Arc<AtomicBool>,
        event: Option<T>,
        ready: &mut Vec<T>,
    ) -> u64 {
        if self.done.is_some_and(|d| gop <= d) {
            // A GOP already finished or given up: its leftovers are late.
            stop.store(true, Ordering::Relaxed);
            return 0;
        }
        match &self.current {
            None => {
                self.current = Some((gop, stop.clone()));
                self.take(event, ready);
                0
            }
            Some((current, _)) if gop == *current => {
                self.take(event, ready);
                0
            }
            Some((current, _)) if gop < *current => {
                stop.store(true, Ordering::Relaxed);
                0
            }
            Some(_) => {
                self.waiting.push_back((gop, stop.clone(), event));
                let newer_gops = self
                    .waiting
                    .iter()
                    .map(|(g, ..)| *g)
                    .fold((None, 0), |(last, n), g| {
                        (Some(g), n + usize::from(last != Some(g)))
                    })
                    .1;
                if newer_gops < 2 && self.waiting.len() <= MAX_WAITING {
                    return 0;
                }
                // The current GOP stays behind: give it up.
                if let Some((current, stop)) = self.current.take() {
                    stop.store(true, Ordering::Relaxed);
                    self.done = Some(current);
                }
                self.promote(ready);
                1
            }
        }
    }

    /// Forgets everything (a new publish session starts).
    pub fn reset(&mut self) {
        *self = GopOrder::default();
    }

    /// An event of the current GOP: published, or the end of the GOP.
    fn take(&mut self, event: Option<T>, ready: &mut Vec<T>) {
        match event {
            Some(e) => ready.push(e),
            None => {
                if let Some((current, _)) = self.current.take() {
                    self.done = Some(current);
                }
                self.promote(ready);
            }
        }
    }

    /// Makes the oldest waiting GOP current and publishes what it has, repeatedly while GOPs
    /// end.
    fn promote(&mut self, ready: &mut Vec<T>) {
        while self.current.is_none() {
            let Some(next) = self.waiting.iter().map(|(g, ..)| *g).min() else {
                return;
            };
            let mut rest = VecDeque::with_capacity(self.waiting.len());
            let mut events = Vec::new();
            for (g, stop, e) in self.waiting.drain(..) {
                if g == next {
                    if self.current.is_none() {
                        self.current = Some((g, stop));
                    }
                    events.push(e);
                } else {
                    rest.push_back((g, stop, e));
                }
            }
            self.waiting = rest;
            for e in events {
                if self.current.is_none() {
                    // The GOP ended; what follows belongs to the next one.
                    break;
                }
                self.take(e, ready);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[test]
    fn a_gop_is_published_to_its_end_before_the_next() {
        let mut o = GopOrder::default();
        let (a, b) = (flag(), flag());
        let mut ready = Vec::new();
        o.push(0, &a, Some("a1"), &mut ready);
        o.push(1, &b, Some("b1"), &mut ready);
        o.push(0, &a, Some("a2"), &mut ready);
        o.push(1, &b, Some("b2"), &mut ready);
        assert_eq!(ready, ["a1", "a2"], "b waits for a's end");
        o.push(0, &a, None, &mut ready);
        assert_eq!(ready, ["a1", "a2", "b1", "b2"]);
        o.push(1, &b, Some("b3"), &mut ready);
        assert_eq!(ready.last(), Some(&"b3"));
        assert!(!a.load(Ordering::Relaxed) && !b.load(Ordering::Relaxed));
    }

    #[test]
    fn a_gop_that_stays_behind_is_given_up() {
        let mut o = GopOrder::default();
        let (a, b, c) = (flag(), flag(), flag());
        let mut ready = Vec::new();
        o.push(0, &a, Some("a1"), &mut ready);
        assert_eq!(o.push(1, &b, Some("b1"), &mut ready), 0);
        // A third GOP starts while the first has not ended: the first is late.
        assert_eq!(o.push(2, &c, Some("c1"), &mut ready), 1);
        assert!(a.load(Ordering::Relaxed), "its reader stops");
        assert_eq!(ready, ["a1", "b1"]);
        o.push(1, &b, None, &mut ready);
        assert_eq!(ready, ["a1", "b1", "c1"]);
        // Its leftovers are dropped.
        o.push(0, &a, Some("a2"), &mut ready);
        assert_eq!(ready.len(), 3);

        let mut o = GopOrder::default();
        let (a, b) = (flag(), flag());
        let mut ready = Vec::new();
        o.push(0, &a, Some(0), &mut ready);
        let mut gave_up = 0;
        for n in 1..=MAX_WAITING as u32 + 1 {
            gave_up += o.push(1, &b, Some(n), &mut ready);
        }
        assert_eq!(gave_up, 1, "too many waiting events");
        assert_eq!(ready.len(), MAX_WAITING + 2);
    }

    #[test]
    fn a_gop_that_ends_while_others_wait_hands_over_in_order() {
        let mut o = GopOrder::default();
        let (a, b) = (flag(), flag());
        let mut ready = Vec::new();
        o.push(5, &a, Some("a1"), &mut ready);
        o.push(6, &b, Some("b1"), &mut ready);
        o.push(6, &b, None, &mut ready);
        assert_eq!(ready, ["a1"]);
        o.push(5, &a, None, &mut ready);
        assert_eq!(ready, ["a1", "b1"], "b ended too: nothing current");
        let c = flag();
        o.push(7, &c, Some("c1"), &mut ready);
        assert_eq!(ready.last(), Some(&"c1"));
        o.push(4, &flag(), Some("old"), &mut ready);
        assert_eq!(ready.len(), 3, "older than done: dropped");
    }
}
