//! Results: one [`ViewerReport`] per viewer, a verdict for each against the [`Thresholds`],
//! latency [`Histogram`]s, and the [`Summary`] line the benchmark script reads.

use std::collections::BTreeMap;

use serde::Serialize;

/// When a viewer counts as keeping up.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Video frame rate of the source.
    pub fps: f64,
    /// Share of `fps` a viewer must receive over the window.
    pub min_fps_ratio: f64,
    /// A viewer whose p95 video latency is above this has fallen behind.
    pub max_latency_ms: f64,
    /// Longest time without a video frame.
    pub max_gap_ms: f64,
    /// Largest share of packets lost.
    pub max_loss: f64,
}

/// Latencies in fixed buckets (the last one collects everything beyond), so that every
/// viewer's frames can be kept without a value per frame.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Width of a bucket, ms.
    step: f64,
    counts: Vec<u64>,
    /// Below zero (the clocks disagree, or the report's mapping is off): counted apart.
    negative: u64,
    n: u64,
    sum: f64,
    max: f64,
}

impl Histogram {
    /// `buckets` buckets of `step` ms.
    pub fn new(step: f64, buckets: usize) -> Self {
        Histogram {
            step,
            counts: vec![0; buckets + 1],
            negative: 0,
            n: 0,
            sum: 0.0,
            max: f64::MIN,
        }
    }

    /// Adds one latency, ms.
    pub fn add(&mut self, ms: f64) {
        self.n += 1;
        self.sum += ms;
        self.max = self.max.max(ms);
        if ms < 0.0 {
            self.negative += 1;
            return;
        }
        let last = self.counts.len() - 1;
        let i = ((ms / self.step) as usize).min(last);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    /// Adds another histogram of the same buckets.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.negative += other.negative;
        self.n += other.n;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Upper edge of the bucket holding the `p` quantile (negative values count as 0).
    fn quantile(&self, p: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let target = ((p * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = self.negative;
        if seen >= target {
            return 0.0;
        }
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return ((i + 1) as f64 * self.step).min(self.max);
            }
        }
        self.max
    }

    /// p50/p95/p99/max/mean.
    pub fn summary(&self) -> Latency {
        Latency {
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: if self.n == 0 { 0.0 } else { self.max },
            mean: if self.n == 0 {
                0.0
            } else {
                self.sum / self.n as f64
            },
            n: self.n,
            negative: self.negative,
        }
    }
}

/// A latency distribution, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Samples (frames or packets).
    pub n: u64,
    /// Samples below zero.
    pub negative: u64,
}

/// What one viewer saw (times in ms from the run's origin).
#[derive(Debug, Clone, Serialize)]
pub struct ViewerReport {
    /// Index (join order).
    pub id: usize,
    /// When its offer was POSTed.
    pub posted_at_ms: f64,
    /// POST -> answer applied.
    pub answer_ms: f64,
    /// POST -> ICE and DTLS connected.
    pub connect_ms: Option<f64>,
    /// POST -> first complete video frame.
    pub ttff_ms: Option<f64>,
    /// Whether video flowed before the window started.
    pub playing_at_start: bool,
    /// Video frames (RTP marker) inside the window.
    pub frames: u64,
    /// Video frames per second over the window.
    pub fps: f64,
    /// Video payload rate over the window.
    pub video_kbps: f64,
    /// Opus packets inside the window.
    pub audio_packets: u64,
    /// Audio payload rate over the window.
    pub audio_kbps: f64,
    /// Media time (video RTP) advanced per second of wall time over the window: 1 when keeping
    /// up with the stream.
    pub media_rate: f64,
    /// RTP packets inside the window (video and audio).
    pub packets: u64,
    /// Sequence numbers never received (skipped minus late arrivals).
    pub lost: u64,
    /// Packets that arrived after a later one (reordered or retransmitted).
    pub late: u64,
    /// Longest time without a video frame inside the window (a stall until its end included).
    pub max_gap_ms: f64,
    /// Video frame latency inside the window (10 ms buckets).
    pub latency_ms: Latency,
    /// Sender reports received (video and audio), whole run.
    pub sender_reports: u64,
    /// Sender reports whose RTP time was 0 (no usable mapping; ignored), whole run.
    pub zero_sender_reports: u64,
    /// Of those, the video track's.
    pub zero_video_sender_reports: u64,
    /// When the session failed, if it did.
    pub error_at_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// `None` when the viewer kept up; else the first rule it broke.
    pub verdict: Option<String>,
}

impl ViewerReport {
    /// Judges the viewer: `None` if it kept up over the whole window.
    pub fn judge(&self, limits: &Thresholds) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("disconnected: {e}"));
        }
        if !self.playing_at_start {
            return Some("not playing when the window started".into());
        }
        if self.latency_ms.p95 > limits.max_latency_ms {
            return Some("fell behind".into());
        }
        if self.max_gap_ms > limits.max_gap_ms {
            return Some("stalled".into());
        }
        if self.fps < limits.fps * limits.min_fps_ratio {
            return Some("frame rate too low".into());
        }
        let sent = self.packets + self.lost;
        if sent > 0 && self.lost as f64 > limits.max_loss * sent as f64 {
            return Some("packets lost".into());
        }
        None
    }
}

/// Three points of a per-viewer distribution.
#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    /// 5th percentile (the slow end of rates).
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (zeros when empty).
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Percentiles {
            p5: rank(&values, 0.05),
            p50: rank(&values, 0.50),
            p95: rank(&values, 0.95),
            max: values.last().copied().unwrap_or(0.0),
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

/// The run in one JSON line.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Always `summary`.
    pub event: &'static str,
    /// Viewers started.
    pub viewers: usize,
    /// Viewers that kept up.
    pub ok: usize,
    /// Viewers that did not, by reason.
    pub failures: BTreeMap<String, usize>,
    /// Viewers whose offer was never answered, by reason (also in `failures`).
    pub refused: usize,
    /// Window length, seconds.
    pub window_s: f64,
    /// Video frame latency over every viewer's frames in the window (1 ms buckets).
    pub latency_ms: Latency,
    /// Opus packet latency over every viewer's packets in the window.
    pub audio_latency_ms: Latency,
    /// Each viewer's p95 video latency.
    pub viewer_p95_latency_ms: Percentiles,
    /// POST -> first complete video frame.
    pub ttff_ms: Percentiles,
    /// POST -> ICE and DTLS connected.
    pub connect_ms: Percentiles,
    /// Video frames per second per viewer.
    pub fps: Percentiles,
    /// Video kbit/s per viewer.
    pub video_kbps: Percentiles,
    /// Media time per wall time per viewer.
    pub media_rate: Percentiles,
    /// Packets lost over all viewers, and the share of all packets.
    pub lost: u64,
    /// `lost` over packets sent.
    pub loss_ratio: f64,
    /// Received payload over all viewers, Mbit/s.
    pub total_mbps: f64,
    /// Sender reports over all viewers.
    pub sender_reports: u64,
    /// Sender reports with RTP time 0 over all viewers (ignored for latency).
    pub zero_sender_reports: u64,
    /// Of those, the video track's.
    pub zero_video_sender_reports: u64,
}

impl Summary {
    /// Summarises judged reports and the merged latency histograms.
    pub fn of(
        reports: &[ViewerReport],
        refused: &[String],
        window_s: f64,
        video: &Histogram,
        audio: &Histogram,
    ) -> Self {
        let mut failures = BTreeMap::new();
        let verdicts = reports.iter().filter_map(|r| r.verdict.as_ref());
        for why in verdicts.chain(refused) {
            let key = why.split(':').next().unwrap_or(why).to_owned();
            *failures.entry(key).or_insert(0) += 1;
        }
        let per = |f: &dyn Fn(&ViewerReport) -> Option<f64>| {
            Percentiles::of(reports.iter().filter_map(f).collect())
        };
        let lost: u64 = reports.iter().map(|r| r.lost).sum();
        let packets: u64 = reports.iter().map(|r| r.packets).sum();
        let kbps: f64 = reports.iter().map(|r| r.video_kbps + r.audio_kbps).sum();
        Summary {
            event: "summary",
            viewers: reports.len() + refused.len(),
            ok: reports.iter().filter(|r| r.verdict.is_none()).count(),
            failures,
            refused: refused.len(),
            window_s,
            latency_ms: video.summary(),
            audio_latency_ms: audio.summary(),
            viewer_p95_latency_ms: per(&|r| (r.latency_ms.n > 0).then_some(r.latency_ms.p95)),
            ttff_ms: per(&|r| r.ttff_ms),
            connect_ms: per(&|r| r.connect_ms),
            fps: per(&|r| Some(r.fps)),
            video_kbps: per(&|r| Some(r.video_kbps)),
            media_rate: per(&|r| Some(r.media_rate)),
            lost,
            loss_ratio: if packets + lost > 0 {
                lost as f64 / (packets + lost) as f64
            } else {
                0.0
            },
            total_mbps: kbps / 1e3,
            sender_reports: reports.iter().map(|r| r.sender_reports).sum(),
            zero_sender_reports: reports.iter().map(|r| r.zero_sender_reports).sum(),
            zero_video_sender_reports: reports.iter().map(|r| r.zero_video_sender_reports).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_bucket_upper_edges() {
        let mut h = Histogram::new(1.0, 1000);
        for ms in 0..100 {
            h.add(f64::from(ms) + 0.5);
        }
        let s = h.summary();
        assert_eq!((s.p50, s.p95, s.p99, s.n), (50.0, 95.0, 99.0, 100));
        assert_eq!(s.max, 99.5);
        h.add(5000.0);
        assert_eq!(h.summary().max, 5000.0, "beyond the last bucket");
        let mut g = Histogram::new(1.0, 1000);
        g.add(-3.0);
        g.merge(&h);
        assert_eq!((g.summary().n, g.summary().negative), (102, 1));
    }

    fn report() -> ViewerReport {
        ViewerReport {
            id: 0,
            posted_at_ms: 0.0,
            answer_ms: 1.0,
            connect_ms: Some(5.0),
            ttff_ms: Some(20.0),
            playing_at_start: true,
            frames: 300,
            fps: 30.0,
            video_kbps: 1000.0,
            audio_packets: 500,
            audio_kbps: 96.0,
            media_rate: 1.0,
            packets: 10_000,
            lost: 0,
            late: 0,
            max_gap_ms: 40.0,
            latency_ms: Latency {
                p95: 50.0,
                ..Latency::default()
            },
            sender_reports: 10,
            zero_sender_reports: 0,
            zero_video_sender_reports: 0,
            error_at_ms: None,
            error: None,
            verdict: None,
        }
    }

    const LIMITS: Thresholds = Thresholds {
        fps: 30.0,
        min_fps_ratio: 0.9,
        max_latency_ms: 1000.0,
        max_gap_ms: 1000.0,
        max_loss: 0.01,
    };

    #[test]
    fn verdicts() {
        assert_eq!(report().judge(&LIMITS), None);
        let mut r = report();
        r.latency_ms.p95 = 1500.0;
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("fell behind"));
        let r = ViewerReport {
            fps: 20.0,
            ..report()
        };
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("frame rate too low"));
        let r = ViewerReport {
            lost: 200,
            ..report()
        };
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("packets lost"));
        let r = ViewerReport {
            max_gap_ms: 3000.0,
            ..report()
        };
        assert_eq!(r.judge(&LIMITS).as_deref(), Some("stalled"));
        let r = ViewerReport {
            error: Some("ICE disconnected".into()),
            ..report()
        };
        assert_eq!(
            r.judge(&LIMITS).as_deref(),
            Some("disconnected: ICE disconnected")
        );
    }
}
