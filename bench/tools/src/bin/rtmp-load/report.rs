//! Results: one [`PlayerReport`] per player, a verdict for each against the [`Thresholds`], and
//! the [`Summary`] line the benchmark script reads.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::player::Thresholds;

/// What one player saw over the run (times in ms from the run's origin).
#[derive(Debug, Clone, Serialize)]
pub struct PlayerReport {
    /// Index of the player (connection order).
    pub id: usize,
    /// Stream it played.
    pub stream: String,
    /// When it started connecting.
    pub connect_at_ms: f64,
    /// Connect -> first decodable video keyframe, if one came.
    pub ttff_ms: Option<f64>,
    /// Whether video flowed before the window started.
    pub playing_at_start: bool,
    /// Video frames inside the window.
    pub video_frames: u64,
    /// Audio frames inside the window.
    pub audio_frames: u64,
    /// Video frames per second over the window.
    pub video_fps: f64,
    /// Largest lag behind real time inside the window (stalls included).
    pub max_lag_ms: f64,
    /// Largest jump between consecutive video timestamps inside the window.
    pub max_gap_ms: f64,
    /// When the connection failed, if it did.
    pub error_at_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// `None` when the player kept up; else the first rule it broke.
    pub verdict: Option<String>,
}

impl PlayerReport {
    /// Judges the player: `None` if it kept up over the whole window.
    pub fn judge(&self, limits: &Thresholds) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("disconnected: {e}"));
        }
        if !self.playing_at_start {
            return Some("not playing when the window started".into());
        }
        if self.max_lag_ms > limits.max_lag_ms {
            return Some("fell behind".into());
        }
        if self.max_gap_ms > limits.max_gap_ms {
            return Some("frames skipped".into());
        }
        if self.video_fps < limits.fps * limits.min_fps_ratio {
            return Some("frame rate too low".into());
        }
        None
    }
}

/// The run in one JSON line.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Always `summary`.
    pub event: &'static str,
    /// Players started.
    pub players: usize,
    /// Players that kept up.
    pub ok: usize,
    /// Players that did not, by reason.
    pub failures: BTreeMap<String, usize>,
    /// Window length, seconds.
    pub window_s: f64,
    /// Connect -> first keyframe over all players: p50, p95, max (ms).
    pub ttff_ms: Percentiles,
    /// Largest lag per player: p50, p95, max (ms).
    pub max_lag_ms: Percentiles,
    /// Video frame rate per player: p5 (the slow end), p50.
    pub video_fps_p5: f64,
    /// Median video frame rate.
    pub video_fps_p50: f64,
}

/// Three points of a distribution.
#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
    /// Values it was computed from.
    pub n: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (zeros when empty).
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Percentiles {
            p50: rank(&values, 0.50),
            p95: rank(&values, 0.95),
            max: values.last().copied().unwrap_or(0.0),
            n: values.len(),
        }
    }
}

/// Nearest-rank percentile of sorted `values`.
fn rank(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    values.get(i).copied().unwrap_or(0.0)
}

impl Summary {
    /// Summarises judged reports.
    pub fn of(reports: &[PlayerReport], window_s: f64) -> Self {
        let mut failures = BTreeMap::new();
        for why in reports.iter().filter_map(|r| r.verdict.as_ref()) {
            // Group "disconnected: read: Connection reset..." by its first part only.
            let key = why.split(':').next().unwrap_or(why).to_owned();
            *failures.entry(key).or_insert(0) += 1;
        }
        let mut sorted_fps: Vec<f64> = reports.iter().map(|r| r.video_fps).collect();
        sorted_fps.sort_by(f64::total_cmp);
        Summary {
            event: "summary",
            players: reports.len(),
            ok: reports.iter().filter(|r| r.verdict.is_none()).count(),
            failures,
            window_s,
            ttff_ms: Percentiles::of(reports.iter().filter_map(|r| r.ttff_ms).collect()),
            max_lag_ms: Percentiles::of(reports.iter().map(|r| r.max_lag_ms).collect()),
            video_fps_p5: rank(&sorted_fps, 0.05),
            video_fps_p50: rank(&sorted_fps, 0.50),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PlayerReport {
        PlayerReport {
            id: 0,
            stream: "s".into(),
            connect_at_ms: 0.0,
            ttff_ms: Some(50.0),
            playing_at_start: true,
            video_frames: 300,
            audio_frames: 430,
            video_fps: 30.0,
            max_lag_ms: 100.0,
            max_gap_ms: 34.0,
            error_at_ms: None,
            error: None,
            verdict: None,
        }
    }

    const LIMITS: Thresholds = Thresholds {
        max_lag_ms: 2000.0,
        max_gap_ms: 1000.0,
        fps: 30.0,
        min_fps_ratio: 0.9,
    };

    #[test]
    fn verdicts() {
        assert_eq!(report().judge(&LIMITS), None);
        let r = PlayerReport {
            max_lag_ms: 2500.0,
            ..report()
        };
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("fell behind"));
        let r = PlayerReport {
            max_gap_ms: 2000.0,
            ..report()
        };
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("frames skipped"));
        let r = PlayerReport {
            video_fps: 25.0,
            ..report()
        };
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("frame rate too low"));
        let r = PlayerReport {
            playing_at_start: false,
            ..report()
        };
        assert!(r.judge(&LIMITS).is_some());
        let r = PlayerReport {
            error: Some("read: reset".into()),
            ..report()
        };
        assert_eq!(
            r.judge(&LIMITS).as_deref(),
            Some("disconnected: read: reset")
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.max, p.n), (50.0, 95.0, 100.0, 100));
        let p = Percentiles::of(vec![]);
        assert_eq!((p.p50, p.max, p.n), (0.0, 0.0, 0));
    }

    #[test]
    fn failures_are_grouped_by_kind() {
        let mut a = report();
        a.verdict = Some("disconnected: read: reset".into());
        let mut b = report();
        b.verdict = Some("disconnected: server closed the connection".into());
        let s = Summary::of(&[a, b, report()], 60.0);
        assert_eq!(s.ok, 1);
        assert_eq!(s.failures.get("disconnected"), Some(&2));
    }
}
