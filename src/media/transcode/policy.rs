//! When the pool falls behind: which renditions skip the next GOP.
//!
//! The decode stage asks at every source keyframe, passing how full the fullest queue of the
//! session is. Above [`HIGH_WATER`] one more rendition, starting from the lowest, sheds the
//! coming GOP; below [`LOW_WATER`] one fewer does; in between nothing changes (hysteresis, so a
//! load near the limit does not flap every GOP). Shedding whole GOPs keeps every rendition
//! decodable: a shed rendition resumes on the next forced IDR.

/// Fill ratio at which one more rendition sheds.
pub const HIGH_WATER: f64 = 0.5;
/// Fill ratio under which one fewer rendition sheds.
pub const LOW_WATER: f64 = 0.25;

/// How many of the lowest renditions shed the current GOP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedPolicy {
    shed: usize,
    renditions: usize,
}

impl ShedPolicy {
    /// A policy for `renditions` renditions, none shedding.
    pub fn new(renditions: usize) -> Self {
        ShedPolicy {
            shed: 0,
            renditions,
        }
    }

    /// At a source keyframe with the fullest queue at `fill` (0.0 empty .. 1.0 full): how many of
    /// the lowest renditions drop this GOP.
    pub fn at_keyframe(&mut self, fill: f64) -> usize {
        if fill >= HIGH_WATER {
            self.shed = (self.shed + 1).min(self.renditions);
        } else if fill < LOW_WATER {
            self.shed = self.shed.saturating_sub(1);
        }
        self.shed
    }

    /// Whether rendition `index` (0 = highest) is among the shed ones.
    pub fn sheds(&self, index: usize) -> bool {
        index >= self.renditions.saturating_sub(self.shed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_the_lowest_first_and_recovers_with_hysteresis() {
        let mut p = ShedPolicy::new(3);
        assert_eq!(p.at_keyframe(0.1), 0);
        assert!(!p.sheds(2));
        assert_eq!(p.at_keyframe(0.6), 1);
        assert!(p.sheds(2) && !p.sheds(1) && !p.sheds(0), "lowest first");
        assert_eq!(p.at_keyframe(0.9), 2);
        assert!(p.sheds(1) && !p.sheds(0));
        assert_eq!(p.at_keyframe(0.4), 2, "between the marks: unchanged");
        assert_eq!(p.at_keyframe(1.0), 3);
        assert_eq!(p.at_keyframe(1.0), 3, "never more than every rendition");
        assert!(p.sheds(0));
        assert_eq!(p.at_keyframe(0.0), 2);
        assert!(!p.sheds(0) && p.sheds(1));
        assert_eq!(p.at_keyframe(0.0), 1);
        assert_eq!(p.at_keyframe(0.0), 0);
        assert_eq!(p.at_keyframe(0.0), 0);
    }
}
