//! Putting a rendition's units back in order on the edge.
//!
//! The origin sends each unit (an HLS segment, or a GOP) on its own QUIC stream, numbered from
//! 0 per subscription, newer ones first when the link is short; the edge reads the streams
//! concurrently, so frames of unit n+1 can reach the pull task before the last frames of unit n.
//! Publishing one unit after the other, each to its end, in their numbers' order, keeps every
//! frame in the origin's order, which the edge's HLS packager needs to write the origin's
//! bytes. A unit that stays behind (or never comes) is given up instead of holding the stream:
//! once frames of two later units wait for it, or more than [`MAX_WAITING`] events, it is
//! declared late, its reader told to stop, and the next unit that came goes on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Events of later units held while the current one finishes (a few seconds of video).
pub const MAX_WAITING: usize = 512;

/// What [`GopOrder::push`] did besides queuing events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Units given up as late.
    pub late: u64,
    /// A unit was given up after some of its events had been published: the events of
    /// `ready` from this index on belong to the units after it.
    pub cut_short: Option<usize>,
}

/// The units of one rendition, put in order.
#[derive(Debug)]
pub struct GopOrder<T> {
    /// The unit being published, and its reader's stop flag.
    current: Option<(u64, Arc<AtomicBool>)>,
    /// The number of the unit that goes on after the current one.
    next: u64,
    /// Events of later units, in arrival order, each with its unit and reader's stop flag.
    waiting: VecDeque<(u64, Arc<AtomicBool>, Option<T>)>,
}

impl<T> Default for GopOrder<T> {
    fn default() -> Self {
        GopOrder {
            current: None,
            next: 0,
            waiting: VecDeque::new(),
        }
    }
}

impl<T> GopOrder<T> {
    /// Takes `event` of unit `unit` (`None`: the unit's stream ended) whose reader stops when
    /// `stop` is set; appends what can be published now, in order, to `ready`.
    pub fn push(
        &mut self,
        unit: u64,
        stop: &Arc<AtomicBool>,
        event: Option<T>,
        ready: &mut Vec<T>,
    ) -> Pushed {
        if let Some((current, _)) = &self.current
            && unit == *current
        {
            self.take(event, ready);
            return Pushed::default();
        }
        if unit < self.next {
            // A unit already finished or given up: its leftovers are late.
            stop.store(true, Ordering::Relaxed);
            return Pushed::default();
        }
        if self.current.is_none() && unit == self.next {
            self.current = Some((unit, stop.clone()));
            self.next = unit + 1;
            self.take(event, ready);
            return Pushed::default();
        }
        self.waiting.push_back((unit, stop.clone(), event));
        let mut later: Vec<u64> = self.waiting.iter().map(|(u, ..)| *u).collect();
        later.sort_unstable();
        later.dedup();
        if later.len() < 2 && self.waiting.len() <= MAX_WAITING {
            return Pushed::default();
        }
        // The current unit (or the one expected next) stays behind: give it up.
        let partial = match self.current.take() {
            Some((_, stop)) => {
                stop.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        };
        // Whatever of it is waiting goes with it.
        let resume_at = later.first().copied().unwrap_or(self.next);
        self.next = resume_at;
        let cut = ready.len();
        self.promote(ready);
        Pushed {
            late: 1,
            cut_short: partial.then_some(cut),
        }
    }

    /// Whether a unit is being published or waited for.
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.waiting.is_empty()
    }

    /// Forgets everything (a new subscription starts, numbering its units from 0).
    pub fn reset(&mut self) {
        *self = GopOrder::default();
    }

    /// An event of the current unit: published, or the end of the unit.
    fn take(&mut self, event: Option<T>, ready: &mut Vec<T>) {
        match event {
            Some(e) => ready.push(e),
            None => {
                self.current = None;
                self.promote(ready);
            }
        }
    }

    /// Makes the expected unit current if it is waiting, and publishes what it has; again while
    /// units end.
    fn promote(&mut self, ready: &mut Vec<T>) {
        while self.current.is_none() {
            let unit = self.next;
            if !self.waiting.iter().any(|(u, ..)| *u == unit) {
                return;
            }
            let mut rest = VecDeque::with_capacity(self.waiting.len());
            let mut events = Vec::new();
            for (u, stop, e) in self.waiting.drain(..) {
                if u == unit {
                    if self.current.is_none() {
                        self.current = Some((u, stop));
                    }
                    events.push(e);
                } else {
                    rest.push_back((u, stop, e));
                }
            }
            self.waiting = rest;
            self.next = unit + 1;
            for e in events {
                match e {
                    Some(e) => ready.push(e),
                    // Its end: the next unit may go on (the loop goes round).
                    None => self.current = None,
                }
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
    fn a_unit_is_published_to_its_end_before_the_next() {
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
    fn units_go_in_their_numbers_order_whatever_arrives_first() {
        let mut o = GopOrder::default();
        let (a, b, c) = (flag(), flag(), flag());
        let mut ready = Vec::new();
        // Unit 1 shows up before unit 0 (its stream was accepted first).
        o.push(1, &b, Some("b1"), &mut ready);
        assert!(ready.is_empty());
        o.push(0, &a, Some("a1"), &mut ready);
        o.push(0, &a, None, &mut ready);
        assert_eq!(ready, ["a1", "b1"]);
        o.push(1, &b, None, &mut ready);
        o.push(2, &c, Some("c1"), &mut ready);
        assert_eq!(ready, ["a1", "b1", "c1"]);
        assert!(![&a, &b, &c].iter().any(|f| f.load(Ordering::Relaxed)));
    }

    #[test]
    fn a_unit_that_stays_behind_is_given_up() {
        let mut o = GopOrder::default();
        let (a, b, c) = (flag(), flag(), flag());
        let mut ready = Vec::new();
        o.push(0, &a, Some("a1"), &mut ready);
        assert_eq!(o.push(1, &b, Some("b1"), &mut ready), Pushed::default());
        // A third unit starts while the first has not ended: the first is late.
        assert_eq!(
            o.push(2, &c, Some("c1"), &mut ready),
            Pushed {
                late: 1,
                cut_short: Some(1)
            }
        );
        assert!(a.load(Ordering::Relaxed), "its reader stops");
        assert_eq!(ready, ["a1", "b1"]);
        o.push(1, &b, None, &mut ready);
        assert_eq!(ready, ["a1", "b1", "c1"]);
        // Its leftovers are dropped.
        o.push(0, &a, Some("a2"), &mut ready);
        assert_eq!(ready.len(), 3);

        // A unit that never comes is given up the same way.
        let mut o = GopOrder::default();
        let (b, c) = (flag(), flag());
        let mut ready = Vec::new();
        o.push(1, &b, Some("b1"), &mut ready);
        assert_eq!(
            o.push(2, &c, Some("c1"), &mut ready),
            Pushed {
                late: 1,
                cut_short: None
            },
            "nothing of unit 0 was published"
        );
        assert_eq!(ready, ["b1"]);

        let mut o = GopOrder::default();
        let (a, b) = (flag(), flag());
        let mut ready = Vec::new();
        o.push(0, &a, Some(0), &mut ready);
        let mut gave_up = 0;
        for n in 1..=MAX_WAITING as u32 + 1 {
            gave_up += o.push(1, &b, Some(n), &mut ready).late;
        }
        assert_eq!(gave_up, 1, "too many waiting events");
        assert_eq!(ready.len(), MAX_WAITING + 2);
        assert!(o.busy());
    }

    #[test]
    fn a_unit_that_ends_while_others_wait_hands_over_in_order() {
        let mut o = GopOrder::default();
        let (a, b) = (flag(), flag());
        let mut ready = Vec::new();
        o.push(0, &a, Some("a1"), &mut ready);
        o.push(1, &b, Some("b1"), &mut ready);
        o.push(1, &b, None, &mut ready);
        assert_eq!(ready, ["a1"]);
        o.push(0, &a, None, &mut ready);
        assert_eq!(ready, ["a1", "b1"], "b ended too: nothing current");
        assert!(!o.busy());
        let c = flag();
        o.push(2, &c, Some("c1"), &mut ready);
        assert_eq!(ready.last(), Some(&"c1"));
        o.push(0, &flag(), Some("old"), &mut ready);
        assert_eq!(ready.len(), 3, "older than done: dropped");
    }
}
