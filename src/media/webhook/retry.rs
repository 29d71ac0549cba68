//! The retry policy of webhook deliveries (sans-IO): what an attempt got, what to do next,
//! exponential backoff bounded by a budget, `Retry-After` honoured within limits.

use super::*;

/// What an attempt got, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The receiver answered.
    Status {
        /// HTTP status.
        code: u16,
        /// Its `Retry-After`, in seconds form.
        retry_after: Option<Duration>,
    },
    /// No answer: connection, TLS or HTTP failure, or timeout.
    Failed,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// 2xx: done.
    Delivered,
    /// A refusal that a retry would not change (4xx but 429, or a redirect, not followed).
    Rejected,
    /// Try again after this wait.
    RetryIn(Duration),
    /// Out of attempts or time.
    GiveUp,
}

/// Exponential backoff for failed attempts (sans-IO).
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    /// Wait after the first failed attempt; doubled after each next one.
    pub(super) first: Duration,
    /// Attempts at most.
    pub(super) attempts: u32,
    /// No retry starts later than this after the first attempt began.
    pub(super) budget: Duration,
    /// Longest wait a receiver's `Retry-After` can ask for.
    pub(super) max_wait: Duration,
}

impl Backoff {
    /// What to do after attempt number `attempt` (from 1) ended with `outcome`, `elapsed` after
    /// the first attempt began.
    pub(super) fn verdict(&self, attempt: u32, outcome: Outcome, elapsed: Duration) -> Verdict {
        let asked = match outcome {
            Outcome::Status {
                code: 200..=299, ..
            } => return Verdict::Delivered,
            Outcome::Status {
                code: 429 | 500..=599,
                retry_after,
            } => retry_after,
            Outcome::Status { .. } => return Verdict::Rejected,
            Outcome::Failed => None,
        };
        if attempt >= self.attempts {
            return Verdict::GiveUp;
        }
        let backoff = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let wait = asked.map_or(backoff, |a| a.min(self.max_wait).max(backoff));
        if elapsed.saturating_add(wait) > self.budget {
            Verdict::GiveUp
        } else {
            Verdict::RetryIn(wait)
        }
    }
}

/// `Retry-After` in its seconds form (the date form is ignored: the backoff applies).
pub(super) fn retry_after(value: &HeaderValue) -> Option<Duration> {
    value
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
