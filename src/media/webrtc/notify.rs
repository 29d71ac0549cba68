//! What a WebRTC session tells whoever started it ([`Notifier`], [`SessionEvent`]) and what
//! the signalling asks of it ([`Control`]).

use tokio::sync::mpsc;

use streamfleet_proto::names::RenditionId;

/// What a session reports to whoever started it (Ant Media's signalling tells the viewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The first frame was written to the viewer.
    Playing,
    /// The session ended (by itself, by `stop`, or with the node).
    Ended,
}

/// Where a session sends its [`SessionEvent`]s, tagged with its id; WHEP listens to none.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// Each session sends at most two events, so a channel of a few per session never fills
    /// while its reader runs; a full or closed channel drops the event.
    tx: Option<mpsc::Sender<(String, SessionEvent)>>,
    /// The session's id.
    id: String,
}

impl Notifier {
    /// Sends events to `tx`.
    pub fn to(tx: mpsc::Sender<(String, SessionEvent)>) -> Self {
        Notifier {
            tx: Some(tx),
            id: String::new(),
        }
    }

    /// The same channel, tagging events with session `id`.
    pub(super) fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }

    /// Reports `event` (never waits).
    pub(crate) fn send(&self, event: SessionEvent) {
        if let Some(tx) = &self.tx
            && tx.try_send((self.id.clone(), event)).is_err()
        {
            tracing::debug!(session = %self.id, ?event, "session event not delivered");
        }
    }
}

/// What the signalling asks of a running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Send this rendition from its next keyframe (`forceStreamQuality`); `None`: let the
    /// server choose again (auto).
    Force(Option<RenditionId>),
}
