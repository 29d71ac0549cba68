//! [`ServerSession`]: the server side of one RTMP connection (publishers and players).
//!
//! Input bytes pass the handshake, then the chunk decoder; each message is handled in order.
//! Protocol chores (acknowledgements, ping responses, releaseStream, FCPublish, createStream,
//! getStreamLength, bandwidth checks, unknown calls) are answered here. `connect`, `publish` and
//! `play` become [`ServerEvent`]s that the application must answer with `accept_*` or
//! `reject_*`; until it does, input processing pauses (bytes stay buffered, up to a limit), so
//! nothing the client sent after the question is acted on before the answer, and the load
//! balancer can still replay everything. Answering resumes processing, so an answer method can
//! return an error from that buffered input; such errors are fatal like those of
//! `handle_input`. Media and metadata of accepted publishers come out as events with their
//! bodies untouched.

mod commands;

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::{
    AckCounter, CSID_AUDIO, CSID_CONTROL, CSID_STREAM, CSID_VIDEO, Outbox, SessionError, status,
};
use crate::rtmp::amf0::{Amf0Limits, Amf0Value};
use crate::rtmp::chunk::{ChunkDecoder, ChunkedBody, DecoderLimits};
use crate::rtmp::handshake::{HandshakeMode, RANDOM_LEN, ServerHandshake};
use crate::rtmp::message::{BandwidthLimit, Message, UserControl, type_id};
use crate::rtmp::splice::DownstreamState;

/// Settings of a server session.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Outgoing chunk size announced after connect (nginx-rtmp and FMS use 4096).
    pub chunk_size: u32,
    /// Window Acknowledgement Size we ask the client to use.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we send the client.
    pub peer_bandwidth: u32,
    /// Limits on the client's chunk stream.
    pub decoder_limits: DecoderLimits,
    /// Limits on AMF0 bodies.
    pub amf0_limits: Amf0Limits,
    /// Most message streams one connection may create.
    pub max_streams: usize,
    /// Most unprocessed input held while an answer is pending.
    pub max_pending_input: usize,
    /// Record all post-handshake input, up to this many bytes, for a load balancer to replay.
    pub record_input: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            decoder_limits: DecoderLimits::default(),
            amf0_limits: Amf0Limits::default(),
            // OBS and FFmpeg create one stream; players at most a few.
            max_streams: 8,
            max_pending_input: 1024 * 1024,
            record_input: None,
        }
    }
}

/// How a publisher wants its stream kept (the `publish` command's second argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishKind {
    /// `live` (and anything unrecognised): nothing is recorded.
    Live,
    /// `record`: record, replacing any earlier recording.
    Record,
    /// `append` / `appendWithGap`: record, appending to an earlier recording.
    Append,
}

/// Something the application must know about (and for some, answer).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The handshake finished.
    HandshakeDone {
        /// Plain or digest handshake.
        mode: HandshakeMode,
    },
    /// `connect`: answer with [`ServerSession::accept_connect`] or
    /// [`ServerSession::reject_connect`].
    Connect {
        /// `app` from the command object (`live` in `rtmp://host/live/key`), as sent.
        app: String,
        /// `tcUrl`, if sent.
        tc_url: Option<String>,
        /// `flashVer`, if sent (e.g. `FMLE/3.0 (compatible; FMSc/1.0)` from OBS).
        flash_ver: Option<String>,
        /// The whole command object, for anything else the application wants.
        command_object: Amf0Value,
    },
    /// `publish`: answer with [`ServerSession::accept_publish`] or
    /// [`ServerSession::reject_publish`].
    Publish {
        /// Message stream the publisher will send media on.
        stream_id: u32,
        /// Stream name as sent, including any `?query`.
        name: String,
        /// Live, record or append.
        kind: PublishKind,
    },
    /// `play`: answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    Play {
        /// Message stream the player wants media on.
        stream_id: u32,
        /// Stream name as sent, including any `?query`.
        name: String,
        /// Start argument (-2 = live or recorded, -1 = live only, >= 0 = recorded from there;
        /// FFmpeg sends these in milliseconds, e.g. -2000).
        start: f64,
        /// Duration argument (-1 = until the end).
        duration: f64,
        /// Reset argument (flush any previous playlist).
        reset: bool,
    },
    /// Audio from an accepted publisher: an FLV audio tag body, untouched.
    Audio {
        /// Message stream.
        stream_id: u32,
        /// Absolute timestamp in milliseconds.
        timestamp: u32,
        /// FLV audio tag body.
        payload: Bytes,
    },
    /// Video from an accepted publisher: an FLV video tag body, untouched.
    Video {
        /// Message stream.
        stream_id: u32,
        /// Absolute timestamp in milliseconds.
        timestamp: u32,
        /// FLV video tag body.
        payload: Bytes,
    },
    /// Metadata from an accepted publisher: AMF0 `"onMetaData", {...}` without any
    /// `@setDataFrame` prefix, ready to be sent to players as a data message.
    Metadata {
        /// Message stream.
        stream_id: u32,
        /// Absolute timestamp in milliseconds.
        timestamp: u32,
        /// AMF0-encoded data message body.
        payload: Bytes,
    },
    /// A publishing stream ended (FCUnpublish, closeStream or deleteStream).
    Unpublish {
        /// Message stream.
        stream_id: u32,
    },
    /// A playing stream ended (closeStream or deleteStream).
    PlayStop {
        /// Message stream.
        stream_id: u32,
    },
}

/// What one message stream of the connection is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamState {
    /// Created, nothing published or played (or asked and not yet answered).
    Idle,
    /// Accepted publisher.
    Publishing {
        /// Stream name (for FCUnpublish).
        name: String,
    },
    /// Accepted player.
    Playing,
}

/// The question the application has not answered yet.
#[derive(Debug, Clone)]
enum Pending {
    /// `connect` with its transaction id and objectEncoding.
    Connect {
        transaction_id: f64,
        object_encoding: f64,
    },
    /// `publish` on a stream.
    Publish { stream_id: u32, name: String },
    /// `play` on a stream.
    Play {
        stream_id: u32,
        name: String,
        reset: bool,
    },
}

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// Reading the handshake.
    Handshake(ServerHandshake),
    /// Handshake done, connect not yet accepted.
    AwaitConnect,
    /// Connect accepted.
    Connected,
    /// Connect rejected: output drains, input is ignored, the IO layer closes.
    Closed,
}

/// The server side of one RTMP connection.
#[derive(Debug)]
pub struct ServerSession {
    /// Settings.
    config: ServerConfig,
    /// Handshake / connect progress.
    phase: Phase,
    /// Input not yet processed.
    input: BytesMut,
    /// Client's chunk stream.
    decoder: ChunkDecoder,
    /// Our chunk stream and pending output.
    out: Outbox,
    /// Events not yet polled.
    events: VecDeque<ServerEvent>,
    /// Question waiting for the application; input processing pauses while it is set.
    pending: Option<Pending>,
    /// Message streams created by createStream.
    streams: BTreeMap<u32, StreamState>,
    /// Next id createStream hands out.
    next_stream_id: u32,
    /// Acknowledgement bookkeeping.
    acks: AckCounter,
    /// Post-handshake input, when recording for a load balancer.
    recorded: Option<BytesMut>,
}

impl ServerSession {
    /// A session waiting for C0+C1. `epoch` and `random` feed the handshake.
    pub fn new(config: ServerConfig, epoch: u32, random: &[u8; RANDOM_LEN]) -> Self {
        ServerSession {
            decoder: ChunkDecoder::new(config.decoder_limits),
            recorded: config.record_input.map(|_| BytesMut::new()),
            config,
            phase: Phase::Handshake(ServerHandshake::new(epoch, random)),
            input: BytesMut::new(),
            out: Outbox::default(),
            events: VecDeque::new(),
            pending: None,
            streams: BTreeMap::new(),
            next_stream_id: 1,
            acks: AckCounter::default(),
        }
    }

    /// Feeds bytes read from the socket and processes as much as possible.
    ///
    /// New events are then available from [`Self::poll_event`] and answers from
    /// [`Self::poll_output`]. An error is fatal to the connection: flush the output if wanted,
    /// then close. While an answer is pending, input is only buffered.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        if matches!(self.phase, Phase::Closed) {
            return Ok(());
        }
        if self.pending.is_some() && self.input.len() + data.len() > self.config.max_pending_input {
            return Err(SessionError::InputOverflow(self.config.max_pending_input));
        }
        self.acks.received += data.len() as u64;
        if !matches!(self.phase, Phase::Handshake(_)) {
            self.record(data)?;
        }
        self.input.extend_from_slice(data);
        self.process()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next piece of pending output, in wire order; call until `None`. Pieces can be
    /// shared media chunks (no copy): write them as they are, e.g. with one vectored write.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        self.out.take()
    }

    /// Appends pending output to `dst`.
    pub fn take_output(&mut self, dst: &mut BytesMut) {
        self.out.copy_to(dst);
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        self.out.len() > 0
    }

    /// Bytes of output waiting (for a caller that bounds what it queues per write).
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Whether an event is waiting for `accept_*` / `reject_*` (input processing is paused).
    pub fn awaiting_answer(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the connection was rejected: flush the output, then close the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the client's chunk stream holds a partially received message.
    pub fn has_partial_input(&self) -> bool {
        self.decoder.has_partial()
    }

    /// Accepts the pending `connect`: window size, peer bandwidth, chunk size, `_result`
    /// (NetConnection.Connect.Success) and `onBWDone`.
    pub fn accept_connect(&mut self) -> Result<(), SessionError> {
        let Some(Pending::Connect {
            transaction_id,
            object_encoding,
        }) = self.pending
        else {
            return Err(SessionError::NoPendingRequest("connect"));
        };
        self.pending = None;
        let window = Message::WindowAckSize(self.config.window_ack_size);
        self.out.send(CSID_CONTROL, 0, 0, &window)?;
        let bandwidth = Message::SetPeerBandwidth {
            size: self.config.peer_bandwidth,
            limit: BandwidthLimit::Dynamic,
        };
        self.out.send(CSID_CONTROL, 0, 0, &bandwidth)?;
        self.out
            .encoder
            .write_set_chunk_size(self.config.chunk_size, &mut self.out.buf)?;
        let properties = Amf0Value::object([
            ("fmsVer", Amf0Value::string("FMS/3,0,1,123")),
            ("capabilities", Amf0Value::Number(31.0)),
        ]);
        let mut information = status(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(props) = &mut information {
            props.push(("objectEncoding".into(), Amf0Value::Number(object_encoding)));
        }
        self.out
            .command(0, "_result", transaction_id, properties, vec![information])?;
        self.out.command(
            0,
            "onBWDone",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Number(8192.0)],
        )?;
        self.phase = Phase::Connected;
        self.process()
    }

    /// Rejects the pending `connect` with `_error` (NetConnection.Connect.Rejected). The session
    /// is closed afterwards: flush the output and close the socket.
    pub fn reject_connect(&mut self, description: &str) -> Result<(), SessionError> {
        let Some(Pending::Connect { transaction_id, .. }) = self.pending else {
            return Err(SessionError::NoPendingRequest("connect"));
        };
        self.pending = None;
        let information = status("error", "NetConnection.Connect.Rejected", description);
        self.out.command(
            0,
            "_error",
            transaction_id,
            Amf0Value::Null,
            vec![information],
        )?;
        self.phase = Phase::Closed;
        Ok(())
    }

    /// Accepts the pending `publish` on `stream_id`: StreamBegin, then onStatus
    /// NetStream.Publish.Start. Media on the stream is reported from now on.
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let name = match &self.pending {
            Some(Pending::Publish {
                stream_id: id,
                name,
            }) if *id == stream_id => name.clone(),
            _ => return Err(SessionError::NoPendingRequest("publish")),
        };
        self.pending = None;
        self.send_user_control(UserControl::StreamBegin(stream_id))?;
        let info = status(
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
        self.on_status(stream_id, info)?;
        self.streams
            .insert(stream_id, StreamState::Publishing { name });
        self.process()
    }

    /// Rejects the pending `publish` with an error onStatus (`code`, e.g.
    /// `NetStream.Publish.BadName`). The stream stays idle; the client usually disconnects.
    pub fn reject_publish(
        &mut self,
        stream_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        match &self.pending {
            Some(Pending::Publish { stream_id: id, .. }) if *id == stream_id => {}
            _ => return Err(SessionError::NoPendingRequest("publish")),
        }
        self.pending = None;
        self.on_status(stream_id, status("error", code, description))?;
        self.process()
    }

    /// Accepts the pending `play` on `stream_id`: StreamBegin, NetStream.Play.Reset (when the
    /// player asked for a reset), NetStream.Play.Start, `|RtmpSampleAccess`,
    /// NetStream.Data.Start. Send media with `send_*` afterwards.
    pub fn accept_play(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let (name, reset) = match &self.pending {
            Some(Pending::Play {
                stream_id: id,
                name,
                reset,
            }) if *id == stream_id => (name.clone(), *reset),
            _ => return Err(SessionError::NoPendingRequest("play")),
        };
        self.pending = None;
        self.send_user_control(UserControl::StreamBegin(stream_id))?;
        if reset {
            let info = status(
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            );
            self.on_status(stream_id, info)?;
        }
        let info = status(
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        self.on_status(stream_id, info)?;
        let sample_access = Message::Data(vec![
            Amf0Value::string("|RtmpSampleAccess"),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ]);
        self.out.send(CSID_STREAM, 0, stream_id, &sample_access)?;
        let data_start = Message::Data(vec![
            Amf0Value::string("onStatus"),
            Amf0Value::object([("code", Amf0Value::string("NetStream.Data.Start"))]),
        ]);
        self.out.send(CSID_STREAM, 0, stream_id, &data_start)?;
        self.streams.insert(stream_id, StreamState::Playing);
        self.process()
    }

    /// Rejects the pending `play` with an error onStatus (`code`, e.g.
    /// `NetStream.Play.StreamNotFound`).
    pub fn reject_play(
        &mut self,
        stream_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        match &self.pending {
            Some(Pending::Play { stream_id: id, .. }) if *id == stream_id => {}
            _ => return Err(SessionError::NoPendingRequest("play")),
        }
        self.pending = None;
        self.on_status(stream_id, status("error", code, description))?;
        self.process()
    }

    /// Sends an audio frame (FLV audio tag body) to a playing stream.
    pub fn send_audio(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        payload: &Bytes,
    ) -> Result<(), SessionError> {
        self.check_playing(stream_id)?;
        self.out
            .send_body(CSID_AUDIO, type_id::AUDIO, timestamp, stream_id, payload)
    }

    /// Sends a video frame (FLV video tag body) to a playing stream.
    pub fn send_video(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        payload: &Bytes,
    ) -> Result<(), SessionError> {
        self.check_playing(stream_id)?;
        self.out
            .send_body(CSID_VIDEO, type_id::VIDEO, timestamp, stream_id, payload)
    }

    /// Sends a video frame whose body was cut into chunks once for many players
    /// ([`ChunkedBody`] for [`CSID_VIDEO`] at [`Self::outgoing_chunk_size`]): only this
    /// connection's header is encoded, the shared chunks follow it in the output without a copy.
    /// A body cut for another chunk size or chunk stream is re-encoded for this connection.
    pub fn send_video_chunked(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        body: &ChunkedBody,
    ) -> Result<(), SessionError> {
        self.send_media_chunked(CSID_VIDEO, type_id::VIDEO, stream_id, timestamp, body)
    }

    /// [`Self::send_video_chunked`] for an audio frame ([`ChunkedBody`] for [`CSID_AUDIO`]).
    pub fn send_audio_chunked(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        body: &ChunkedBody,
    ) -> Result<(), SessionError> {
        self.send_media_chunked(CSID_AUDIO, type_id::AUDIO, stream_id, timestamp, body)
    }

    /// The chunk size of what this session sends (fixed by [`ServerConfig::chunk_size`] once
    /// `connect` is accepted): the size shared [`ChunkedBody`]s must be cut with.
    pub fn outgoing_chunk_size(&self) -> u32 {
        self.out.encoder.chunk_size()
    }

    /// Sends metadata (an AMF0 data body such as [`ServerEvent::Metadata`]'s) to a playing
    /// stream.
    pub fn send_metadata(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        payload: &Bytes,
    ) -> Result<(), SessionError> {
        self.check_playing(stream_id)?;
        self.out.send_body(
            CSID_STREAM,
            type_id::DATA_AMF0,
            timestamp,
            stream_id,
            payload,
        )
    }

    /// Tells a player that the publisher went away: StreamEOF and onStatus
    /// NetStream.Play.UnpublishNotify.
    pub fn notify_unpublished(&mut self, stream_id: u32) -> Result<(), SessionError> {
        self.check_playing(stream_id)?;
        self.send_user_control(UserControl::StreamEof(stream_id))?;
        let info = status(
            "status",
            "NetStream.Play.UnpublishNotify",
            "The stream is unpublished.",
        );
        self.on_status(stream_id, info)
    }

    /// The chunk-stream state this session has given the client, for a load balancer's splice.
    pub fn downstream_state(&self) -> DownstreamState {
        DownstreamState {
            chunk_size: self.out.encoder.chunk_size(),
            csids: self.out.encoder.used_csids().collect(),
        }
    }

    /// All input received after the handshake (when `record_input` was configured): what a
    /// load balancer replays to the server it picks. Take it when the Publish / Play event
    /// arrives (leave that event unanswered) and from then on forward the client's bytes to the
    /// server unchanged instead of feeding them here. Recording stops once this is taken.
    pub fn take_recorded_input(&mut self) -> Option<Bytes> {
        self.recorded.take().map(BytesMut::freeze)
    }

    /// Appends to the recording, within its limit.
    fn record(&mut self, data: &[u8]) -> Result<(), SessionError> {
        if let (Some(recorded), Some(limit)) = (&mut self.recorded, self.config.record_input) {
            if recorded.len() + data.len() > limit {
                return Err(SessionError::RecordingOverflow(limit));
            }
            recorded.extend_from_slice(data);
        }
        Ok(())
    }

    /// Processes buffered input until it runs out or a question is pending.
    fn process(&mut self) -> Result<(), SessionError> {
        while self.pending.is_none() {
            match &mut self.phase {
                Phase::Closed => break,
                Phase::Handshake(handshake) => {
                    let Some(mode) = handshake.read(&mut self.input, &mut self.out.buf)? else {
                        break;
                    };
                    self.phase = Phase::AwaitConnect;
                    let leftover = self.input.clone();
                    self.record(&leftover)?;
                    self.events.push_back(ServerEvent::HandshakeDone { mode });
                }
                Phase::AwaitConnect | Phase::Connected => {
                    let Some(raw) = self.decoder.decode(&mut self.input)? else {
                        break;
                    };
                    self.handle_message(raw)?;
                }
            }
        }
        self.acks.maybe_ack(&mut self.out)
    }

    /// Checks that `stream_id` exists and is idle (publish/play target).
    fn check_idle(&self, stream_id: u32) -> Result<(), SessionError> {
        match self.streams.get(&stream_id) {
            Some(StreamState::Idle) => Ok(()),
            _ => Err(SessionError::UnknownStream(stream_id)),
        }
    }

    /// Checks that `stream_id` is an accepted player.
    fn check_playing(&self, stream_id: u32) -> Result<(), SessionError> {
        match self.streams.get(&stream_id) {
            Some(StreamState::Playing) => Ok(()),
            _ => Err(SessionError::StreamNotActive(stream_id)),
        }
    }

    /// Sends a pre-chunked media body on `csid`, or re-encodes it when it was cut for another
    /// chunk stream.
    fn send_media_chunked(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        body: &ChunkedBody,
    ) -> Result<(), SessionError> {
        self.check_playing(stream_id)?;
        if body.csid() != csid {
            return self
                .out
                .send_body(csid, type_id, timestamp, stream_id, body.payload());
        }
        self.out.send_chunked(type_id, timestamp, stream_id, body)
    }

    /// Sends a user control event on csid 2.
    fn send_user_control(&mut self, event: UserControl) -> Result<(), SessionError> {
        self.out
            .send(CSID_CONTROL, 0, 0, &Message::UserControl(event))
    }

    /// Sends `onStatus(0, null, info)` on a stream.
    fn on_status(&mut self, stream_id: u32, info: Amf0Value) -> Result<(), SessionError> {
        self.out
            .command(stream_id, "onStatus", 0.0, Amf0Value::Null, vec![info])
    }
}
