//! One accepted player: hub events in, RTMP messages out through the connection's session.
//!
//! Timestamps are rebased per player: the first frame it receives is at 0 and time only moves
//! forward, across republishes too (a new publish session continues where the old one
//! stopped), which is what RTMP players expect.
//!
//! Frames are chunked once per hub, not once per player: the first player to send a frame
//! cuts its body into RTMP chunks ([`ChunkedBody`], cached in the frame that every player's
//! hub event shares); each player then encodes only its own message header (its own
//! timestamp) and queues the shared chunks behind it without a copy.

use crate::media::frame::{StreamInfo, TrackKind};
use crate::media::hub::{HubEvent, Subscription};
use streamfleet_proto::rtmp::chunk::ChunkedBody;
use streamfleet_proto::rtmp::session::{CSID_AUDIO, CSID_VIDEO, ServerSession, SessionError};

/// A playing message stream of an RTMP connection.
pub struct Playback {
    /// RTMP message stream id the player receives on.
    pub stream_id: u32,
    /// The hub subscription.
    pub sub: Subscription,
    generation: u64,
    /// Output time of the first frame of the current publish session.
    base_out: u64,
    /// Input time of the first frame of the current publish session.
    first_in: Option<u64>,
    /// Last output timestamp.
    last_out: u64,
    /// Sequence headers and metadata wait for the first frame (to carry its timestamp).
    pending_info: Option<std::sync::Arc<StreamInfo>>,
}

impl Playback {
    /// Starts playing `sub` on `stream_id`.
    pub fn new(stream_id: u32, sub: Subscription) -> Self {
        Playback {
            stream_id,
            sub,
            generation: 0,
            base_out: 0,
            first_in: None,
            last_out: 0,
            pending_info: None,
        }
    }

    /// Turns one hub event into RTMP messages. Returns the payload bytes queued.
    pub fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: HubEvent,
    ) -> Result<u64, SessionError> {
        let id = self.stream_id;
        match event {
            HubEvent::Start { info, generation } => {
                if generation != self.generation {
                    if self.generation != 0 {
                        // Continue the timeline a little after the last frame sent.
                        self.base_out = self.last_out + 40;
                    }
                    self.generation = generation;
                    self.first_in = None;
                }
                self.pending_info = Some(info);
                Ok(0)
            }
            HubEvent::Frame(frame) => {
                let first_in = *self.first_in.get_or_insert(frame.dts);
                let out = self.base_out + frame.dts.saturating_sub(first_in);
                self.last_out = self.last_out.max(out);
                let ts = out as u32;
                let mut sent = 0;
                if let Some(info) = self.pending_info.take() {
                    sent += send_info(session, id, ts, &info)?;
                }
                let csid = match frame.kind {
                    TrackKind::Video => CSID_VIDEO,
                    TrackKind::Audio => CSID_AUDIO,
                };
                let chunk_size = session.outgoing_chunk_size();
                let shared = frame
                    .rtmp_chunks
                    .get_or_init(|| ChunkedBody::new(chunk_size, csid, frame.body.clone()).ok());
                match (frame.kind, shared) {
                    (TrackKind::Video, Some(body)) => session.send_video_chunked(id, ts, body)?,
                    (TrackKind::Audio, Some(body)) => session.send_audio_chunked(id, ts, body)?,
                    (TrackKind::Video, None) => session.send_video(id, ts, &frame.body)?,
                    (TrackKind::Audio, None) => session.send_audio(id, ts, &frame.body)?,
                }
                Ok(sent + frame.body.len() as u64)
            }
            HubEvent::Stop { .. } => {
                session.notify_unpublished(id)?;
                Ok(0)
            }
        }
    }
}

fn send_info(
    session: &mut ServerSession,
    id: u32,
    ts: u32,
    info: &StreamInfo,
) -> Result<u64, SessionError> {
    let mut sent = 0;
    if let Some(m) = &info.metadata {
        session.send_metadata(id, ts, m)?;
        sent += m.len();
    }
    if let Some(v) = &info.video {
        session.send_video(id, ts, &v.sequence_header)?;
        sent += v.sequence_header.len();
    }
    if let Some(a) = &info.audio {
        session.send_audio(id, ts, &a.sequence_header)?;
        sent += a.sequence_header.len();
    }
    Ok(sent as u64)
}
