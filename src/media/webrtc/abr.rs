//! Bandwidth-driven rendition choice for one viewer (WebRTC ABR), sans-IO: fed with str0m's
//! send-side bandwidth estimates (TWCC) and the ladder's bit rates, it says when to step down
//! or up; the session then switches at the next keyframe (`switch`).
//!
//! - Down: the estimate stays below the current rendition's bit rate for [`Abr::DOWN_AFTER`]
//!   -> the best rendition that fits the estimate (else the lowest).
//! - Up: the estimate stays above the next better rendition's bit rate times
//!   [`Abr::HEADROOM`] for [`Abr::UP_AFTER`] -> that rendition (one step at a time).
//! - Hysteresis: nothing for [`Abr::HOLD`] after any switch (the estimate reacts to the new
//!   rate first); never while the viewer forced a rendition; the timers restart whenever the
//!   estimate crosses back.

use std::time::{Duration, Instant};

/// One viewer's controller.
#[derive(Debug, Default)]
pub struct Abr {
    /// Since when the estimate has been below the current rendition's bit rate.
    below_since: Option<Instant>,
    /// Since when it has been above the next better rendition's with headroom.
    above_since: Option<Instant>,
    /// The last switch (any reason).
    last_switch: Option<Instant>,
}

impl Abr {
    /// How long the estimate must stay below the current bit rate before stepping down.
    pub const DOWN_AFTER: Duration = Duration::from_secs(3);
    /// How long it must stay above the better rendition's (with headroom) before stepping up.
    pub const UP_AFTER: Duration = Duration::from_secs(8);
    /// Stepping up needs this much more than the better rendition's bit rate.
    pub const HEADROOM: f64 = 1.3;
    /// No decision this long after a switch.
    pub const HOLD: Duration = Duration::from_secs(4);

    /// One estimate (bits per second) at `now`. `ladder`: the bit rates of the renditions the
    /// viewer may get, best first (0 = unknown: no decision); `current`: the index of the one
    /// sent; `forced`: the viewer chose its rendition. Returns the index to switch to.
    pub fn estimate(
        &mut self,
        now: Instant,
        estimate: u64,
        ladder: &[u64],
        current: usize,
        forced: bool,
    ) -> Option<usize> {
        let Some(&rate) = ladder.get(current) else {
            self.restart();
            return None;
        };
        if forced || ladder.len() < 2 || ladder.contains(&0) {
            self.restart();
            return None;
        }
        if self
            .last_switch
            .is_some_and(|t| now.saturating_duration_since(t) < Self::HOLD)
        {
            self.restart();
            return None;
        }
        if estimate < rate {
            self.above_since = None;
            let since = *self.below_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= Self::DOWN_AFTER
                && current + 1 < ladder.len()
            {
                let fits = (current + 1..ladder.len()).find(|&i| ladder[i] <= estimate);
                return Some(fits.unwrap_or(ladder.len() - 1));
            }
            return None;
        }
        self.below_since = None;
        let better = current
            .checked_sub(1)
            .and_then(|i| ladder.get(i).map(|r| (i, *r)));
        match better {
            Some((i, r)) if estimate as f64 >= r as f64 * Self::HEADROOM => {
                let since = *self.above_since.get_or_insert(now);
                (now.saturating_duration_since(since) >= Self::UP_AFTER).then_some(i)
            }
            _ => {
                self.above_since = None;
                None
            }
        }
    }

    /// The viewer's rendition changed at `now` (by this controller or for another reason).
    pub fn switched(&mut self, now: Instant) {
        self.last_switch = Some(now);
        self.restart();
    }

    fn restart(&mut self) {
        self.below_since = None;
        self.above_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source 2.5 Mbps, 1 Mbps, 300 kbps.
    const LADDER: [u64; 3] = [2_500_000, 1_000_000, 300_000];

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn steps_down_only_when_the_estimate_stays_below() {
        let t0 = Instant::now();
        let mut abr = Abr::default();
        assert_eq!(abr.estimate(at(t0, 0), 2_000_000, &LADDER, 0, false), None);
        assert_eq!(
            abr.estimate(at(t0, 2000), 2_000_000, &LADDER, 0, false),
            None
        );
        // A short recovery restarts the timer.
        assert_eq!(
            abr.estimate(at(t0, 2500), 3_000_000, &LADDER, 0, false),
            None
        );
        assert_eq!(
            abr.estimate(at(t0, 3500), 2_000_000, &LADDER, 0, false),
            None
        );
        assert_eq!(
            abr.estimate(at(t0, 6000), 2_000_000, &LADDER, 0, false),
            None
        );
        // Below for 3 s: down to the best that fits (1 Mbps).
        assert_eq!(
            abr.estimate(at(t0, 6500), 2_000_000, &LADDER, 0, false),
            Some(1)
        );
    }

    #[test]
    fn a_deep_drop_goes_to_the_rendition_that_fits_or_the_lowest() {
        let t0 = Instant::now();
        let mut abr = Abr::default();
        abr.estimate(at(t0, 0), 500_000, &LADDER, 0, false);
        assert_eq!(
            abr.estimate(at(t0, 3000), 500_000, &LADDER, 0, false),
            Some(2)
        );
        let mut abr = Abr::default();
        abr.estimate(at(t0, 0), 100_000, &LADDER, 0, false);
        assert_eq!(
            abr.estimate(at(t0, 3000), 100_000, &LADDER, 0, false),
            Some(2)
        );
        // Already the lowest: nowhere to go.
        let mut abr = Abr::default();
        abr.estimate(at(t0, 0), 100_000, &LADDER, 2, false);
        assert_eq!(abr.estimate(at(t0, 9000), 100_000, &LADDER, 2, false), None);
    }

    #[test]
    fn steps_up_one_rendition_after_a_recovery_with_headroom() {
        let t0 = Instant::now();
        let mut abr = Abr::default();
        // 1.2 Mbps is above 1 Mbps but not 1.3 x 1 Mbps: stays at 300 kbps.
        abr.estimate(at(t0, 0), 1_200_000, &LADDER, 2, false);
        assert_eq!(
            abr.estimate(at(t0, 20_000), 1_200_000, &LADDER, 2, false),
            None
        );
        // 5 Mbps for 8 s: one step (to 1 Mbps), not straight to the source.
        abr.estimate(at(t0, 21_000), 5_000_000, &LADDER, 2, false);
        assert_eq!(
            abr.estimate(at(t0, 28_000), 5_000_000, &LADDER, 2, false),
            None
        );
        assert_eq!(
            abr.estimate(at(t0, 29_000), 5_000_000, &LADDER, 2, false),
            Some(1)
        );
    }

    #[test]
    fn holds_after_a_switch_and_never_decides_when_forced() {
        let t0 = Instant::now();
        let mut abr = Abr::default();
        abr.switched(at(t0, 0));
        abr.estimate(at(t0, 100), 100_000, &LADDER, 0, false);
        assert_eq!(abr.estimate(at(t0, 3900), 100_000, &LADDER, 0, false), None);
        // The hold is over: the timer starts now.
        assert_eq!(abr.estimate(at(t0, 4000), 100_000, &LADDER, 0, false), None);
        assert_eq!(
            abr.estimate(at(t0, 7000), 100_000, &LADDER, 0, false),
            Some(2)
        );

        let mut abr = Abr::default();
        for s in 0..20 {
            assert_eq!(
                abr.estimate(at(t0, s * 1000), 100_000, &LADDER, 0, true),
                None
            );
        }
        // Unknown bit rates, or a single rendition: nothing to decide.
        assert_eq!(abr.estimate(at(t0, 30_000), 1, &[0, 1], 0, false), None);
        assert_eq!(abr.estimate(at(t0, 40_000), 1, &[5], 0, false), None);
    }
}
