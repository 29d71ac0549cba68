//! Ant Media's WebSocket *publish* flow on the signalling socket, as `@antmedia/webrtc_adaptor`
//! speaks it: `publish` {streamId, token} -> the publisher is admitted like an RTMP or WHIP one
//! (`ingest::Publishing::admit`: role, stream id, `security.publish`, `max_streams`, one
//! publisher per stream in the cluster, the store lease) and the server says `start`; the
//! client's offer (`takeConfiguration` type `offer`) is answered (`takeConfiguration` type
//! `answer`, then the server's host candidate in `takeCandidate`) by the WHIP publisher session
//! (`WebRtc::publish`); its first video frame is `publish_started`, its end (`stop`, the socket
//! closing, silence, a takeover) `publish_finished`. The client's candidates need no action:
//! this node is ICE-lite and learns the publisher's address from its checks.

use tokio::time::Instant;

use super::Signalling;
use crate::config::Role;
use crate::media::hub::HubKey;
use crate::media::ingest::{Admitted, Ingest, PublishRefused};
use crate::media::webrtc::publish::PublishOffer;
use crate::media::webrtc::signal::{Definition, Reply};
use crate::media::webrtc::{CONNECT_TIMEOUT, Notifier, SessionEvent};

/// Streams one socket may publish at once.
pub const MAX_PUBLISHES_PER_SOCKET: usize = 2;

/// One stream a socket publishes.
pub(super) enum Publish {
    /// Admitted (the stream is claimed) and `start` sent; the offer is awaited until
    /// `deadline`.
    Admitted {
        /// The claim, dropped (and the stream released) if no offer comes.
        admitted: Box<Admitted>,
        /// Dropped with `publish_finished` after this.
        deadline: Instant,
    },
    /// The publisher session runs.
    Started {
        /// Its id (events carry it).
        id: String,
    },
}

/// The `error` definition of a refused publisher (Ant Media's names where it has one).
fn refusal(r: &PublishRefused) -> Definition {
    match r {
        PublishRefused::Edge => Definition::PublishNotAllowed,
        PublishRefused::NoApp(_) => Definition::NotServed,
        PublishRefused::BadName(_) => Definition::InvalidStreamName,
        PublishRefused::Forbidden { .. } => Definition::Unauthorized,
        PublishRefused::Full(_) | PublishRefused::MemoryFull(_) => Definition::HighResourceUsage,
        PublishRefused::InUse(_) | PublishRefused::Elsewhere { .. } => Definition::StreamIdInUse,
    }
}

/// The `a=candidate:` value of an SDP (the server's one host candidate).
fn host_candidate(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|c| format!("candidate:{c}"))
}

/// The first m-line's mid.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

impl Signalling {
    /// `publish`: admission, then `start`.
    pub(super) async fn publish(&mut self, stream_id: String, token: Option<&str>) -> Vec<Reply> {
        let err = |d: Definition, m: String| vec![Reply::error(d, Some(&stream_id), Some(m))];
        if self.ctx.config.role == Role::Edge {
            return err(
                Definition::PublishNotAllowed,
                PublishRefused::Edge.to_string(),
            );
        }
        if self.publishes.contains_key(&stream_id) {
            return err(
                Definition::StreamIdInUse,
                "this socket already publishes the stream; `stop` it first".into(),
            );
        }
        if self.publishes.len() >= MAX_PUBLISHES_PER_SOCKET {
            return err(
                Definition::HighResourceUsage,
                format!("a socket publishes at most {MAX_PUBLISHES_PER_SOCKET} streams"),
            );
        }
        match self
            .ctx
            .publishing
            .admit(&self.app, &stream_id, token)
            .await
        {
            Ok(admitted) => {
                self.publishes.insert(
                    stream_id.clone(),
                    Publish::Admitted {
                        admitted: Box::new(admitted),
                        deadline: Instant::now() + CONNECT_TIMEOUT,
                    },
                );
                vec![Reply::Start { stream_id }]
            }
            Err(r) => {
                // The reason may quote the id as sent: only its definition is logged.
                let definition = refusal(&r).as_str();
                tracing::debug!(app = %self.app, definition, "websocket publish refused");
                err(refusal(&r), r.to_string())
            }
        }
    }

    /// The publisher's `takeConfiguration` (type `offer`): the session starts and answers.
    pub(super) fn publish_offer(&mut self, stream_id: &str, sdp: &str) -> Vec<Reply> {
        let err = |d: Definition, m: String| vec![Reply::error(d, Some(stream_id), Some(m))];
        if !matches!(
            self.publishes.get(stream_id),
            Some(Publish::Admitted { .. })
        ) {
            return err(
                Definition::NoSession,
                "no `publish` of this stream waits for an offer on this socket".into(),
            );
        }
        // A malformed offer costs nothing: the claim stays until the deadline for another.
        let offer = match PublishOffer::parse(sdp) {
            Ok(o) => o,
            Err(e) => {
                // A parse error may quote the offer: not logged.
                tracing::debug!(app = %self.app, "websocket publish offer refused (malformed)");
                return err(
                    Definition::NotSetRemoteDescription,
                    super::super::whep::error_text(&e),
                );
            }
        };
        let Some(Publish::Admitted { admitted, .. }) = self.publishes.remove(stream_id) else {
            return Vec::new();
        };
        let ingest = Ingest::new(0, *admitted);
        let notifier = Notifier::to(self.events_tx.clone());
        match self.webrtc.publish(
            offer,
            ingest,
            self.client,
            self.ctx.config.hls.segment,
            notifier,
        ) {
            Ok(answer) => {
                tracing::info!(stream = %HubKey::source(&self.app, stream_id), session = %answer.id,
                    "publishing over Ant Media's WebSocket");
                let mut replies = Vec::with_capacity(2);
                let candidate = host_candidate(&answer.sdp);
                let mid = first_mid(&answer.sdp).unwrap_or_else(|| "0".into());
                replies.push(Reply::Answer {
                    stream_id: stream_id.to_owned(),
                    sdp: answer.sdp,
                });
                if let Some(candidate) = candidate {
                    replies.push(Reply::Candidate {
                        stream_id: stream_id.to_owned(),
                        label: 0,
                        mid,
                        candidate,
                    });
                }
                self.publishes
                    .insert(stream_id.to_owned(), Publish::Started { id: answer.id });
                replies
            }
            Err(e) => {
                // The claim went with the ingest: the client publishes again.
                tracing::debug!(error = %e, "websocket publish offer refused");
                let mut r = err(super::definition(&e), super::super::whep::error_text(&e));
                r.push(Reply::notification(
                    Definition::PublishFinished,
                    Some(stream_id),
                ));
                r
            }
        }
    }

    /// `stop` of a published stream: its session ends, `publish_finished`; false if the
    /// socket does not publish it.
    pub(super) fn stop_publish(&mut self, stream_id: &str) -> Option<Vec<Reply>> {
        let publish = self.publishes.remove(stream_id)?;
        if let Publish::Started { id } = publish {
            self.webrtc
                .close(&HubKey::source(&self.app, stream_id), &id, true);
        }
        Some(vec![Reply::notification(
            Definition::PublishFinished,
            Some(stream_id),
        )])
    }

    /// A publisher session's event (`publish_started` / `publish_finished`), or `None` if the
    /// session is not one this socket publishes.
    pub(super) fn publish_event(&mut self, id: &str, ev: SessionEvent) -> Option<Vec<Reply>> {
        let stream_id = self.publishes.iter().find_map(|(s, p)| match p {
            Publish::Started { id: i } if i == id => Some(s.clone()),
            _ => None,
        })?;
        Some(match ev {
            SessionEvent::Playing => vec![Reply::notification(
                Definition::PublishStarted,
                Some(&stream_id),
            )],
            SessionEvent::Ended => {
                self.publishes.remove(&stream_id);
                vec![Reply::notification(
                    Definition::PublishFinished,
                    Some(&stream_id),
                )]
            }
        })
    }

    /// The earliest deadline of a `publish` still waiting for its offer.
    pub(super) fn publish_deadline(&self) -> Option<Instant> {
        self.publishes
            .values()
            .filter_map(|p| match p {
                Publish::Admitted { deadline, .. } => Some(*deadline),
                Publish::Started { .. } => None,
            })
            .min()
    }

    /// Releases the streams whose offer never came within [`CONNECT_TIMEOUT`].
    pub(super) fn expire_publishes(&mut self) -> Vec<Reply> {
        let now = Instant::now();
        let expired: Vec<String> = self
            .publishes
            .iter()
            .filter(|(_, p)| matches!(p, Publish::Admitted { deadline, .. } if *deadline <= now))
            .map(|(s, _)| s.clone())
            .collect();
        expired
            .into_iter()
            .map(|s| {
                self.publishes.remove(&s);
                Reply::notification(Definition::PublishFinished, Some(&s))
            })
            .collect()
    }

    /// The socket ended: its publications end with it.
    pub(super) fn end_publishes(&mut self) {
        for (stream_id, publish) in self.publishes.drain() {
            if let Publish::Started { id } = publish {
                self.webrtc
                    .close(&HubKey::source(&self.app, &stream_id), &id, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_as_ant_media_names_them() {
        assert_eq!(
            refusal(&PublishRefused::InUse("live/a".into())).as_str(),
            "streamIdInUse"
        );
        assert_eq!(
            refusal(&PublishRefused::Elsewhere {
                stream: "live/a".into(),
                origin: "o2".into()
            })
            .as_str(),
            "streamIdInUse"
        );
        assert_eq!(
            refusal(&PublishRefused::Edge),
            Definition::PublishNotAllowed
        );
        assert_eq!(
            refusal(&PublishRefused::BadName("x".into())),
            Definition::InvalidStreamName
        );
        assert_eq!(
            refusal(&PublishRefused::Full(3)).as_str(),
            "highResourceUsage"
        );
    }

    #[test]
    fn the_answers_candidate_and_mid() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";
        assert_eq!(
            host_candidate(sdp).as_deref(),
            Some("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host")
        );
        assert_eq!(first_mid(sdp).as_deref(), Some("0"));
        assert_eq!(host_candidate("v=0\r\n"), None);
    }
}
