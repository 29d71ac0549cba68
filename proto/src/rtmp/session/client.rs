//! [`ClientSession`]: the client side of one RTMP connection, for tests, the load generator and
//! the load balancer's own view of a server.
//!
//! After the handshake the session sends its chunk size and `connect` by itself; the caller then
//! drives it with `create_stream`, `publish` / `play`, media sends and stream teardown, and reads
//! what the server says as [`ClientEvent`]s (connect result, stream ids, onStatus codes, media).
//! Acknowledgements, ping responses and Set Peer Bandwidth answers are handled here.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::{
    AckCounter, CSID_AUDIO, CSID_CONTROL, CSID_STREAM, CSID_VIDEO, Outbox, SessionError, arg_f64,
};
use crate::rtmp::amf0::{Amf0Limits, Amf0Value};
use crate::rtmp::chunk::{ChunkDecoder, DecoderLimits, RawMessage};
use crate::rtmp::handshake::{ClientHandshake, ClientHandshakeDone, RANDOM_LEN};
use crate::rtmp::message::{Command, Message, UserControl, type_id};
use crate::rtmp::session::server::PublishKind;

/// Settings of a client session.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `app` for connect (`live` for `rtmp://host/live/key`).
    pub app: String,
    /// `tcUrl` for connect (`rtmp://host/live`).
    pub tc_url: String,
    /// `flashVer` for connect.
    pub flash_ver: String,
    /// Outgoing chunk size, announced right after the handshake when not 128.
    pub chunk_size: u32,
    /// Use the digest handshake (as OBS/librtmp do) instead of the plain one.
    pub digest_handshake: bool,
    /// Limits on the server's chunk stream.
    pub decoder_limits: DecoderLimits,
    /// Limits on AMF0 bodies.
    pub amf0_limits: Amf0Limits,
}

impl ClientConfig {
    /// Defaults for connecting to `app` at `tc_url`.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        ClientConfig {
            app: app.into(),
            tc_url: tc_url.into(),
            flash_ver: "FMLE/3.0 (compatible; streamfleet)".into(),
            chunk_size: 4096,
            digest_handshake: false,
            decoder_limits: DecoderLimits::default(),
            amf0_limits: Amf0Limits::default(),
        }
    }
}

/// What the server told the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The handshake finished (with what the server's digests proved).
    HandshakeDone(ClientHandshakeDone),
    /// `connect` succeeded.
    Connected {
        /// The `_result` information object (code NetConnection.Connect.Success, ...).
        information: Amf0Value,
    },
    /// `connect` failed (`_error`).
    ConnectFailed {
        /// The `_error` information object (code NetConnection.Connect.Rejected, ...).
        information: Amf0Value,
    },
    /// `createStream` returned a stream id.
    StreamCreated {
        /// The new message stream id.
        stream_id: u32,
    },
    /// onStatus (as a command, or as a data message like NetStream.Data.Start).
    Status {
        /// Message stream it concerns.
        stream_id: u32,
        /// `status`, `warning` or `error`.
        level: String,
        /// Status code, e.g. `NetStream.Publish.Start`.
        code: String,
        /// Human-readable description.
        description: String,
    },
    /// `_result` or `_error` for a call other than connect/createStream.
    CallResult {
        /// The command we sent (`releaseStream`, ...), if we know it.
        call: Option<String>,
        /// Whether it was `_error`.
        error: bool,
        /// Everything after the transaction id.
        values: Vec<Amf0Value>,
    },
    /// Any other command from the server (onBWDone, onFCPublish, ...).
    Command {
        /// Message stream.
        stream_id: u32,
        /// The command.
        command: Command,
    },
    /// A user control event (StreamBegin, StreamEOF, ...), except pings.
    UserControl(UserControl),
    /// Audio: an FLV audio tag body.
    Audio {
        /// Message stream.
        stream_id: u32,
        /// Absolute timestamp in milliseconds.
        timestamp: u32,
        /// Body.
        payload: Bytes,
    },
    /// Video: an FLV video tag body.
    Video {
        /// Message stream.
        stream_id: u32,
        /// Absolute timestamp in milliseconds.
        timestamp: u32,
        /// Body.
        payload: Bytes,
    },
    /// A data message other than onStatus (onMetaData, |RtmpSampleAccess, ...).
    Data {
        /// Message stream.
        stream_id: u32,
        /// Absolute timestamp in milliseconds.
        timestamp: u32,
        /// Decoded values.
        values: Vec<Amf0Value>,
    },
}

/// Where the client is.
#[derive(Debug)]
enum Phase {
    /// Handshaking.
    Handshake(ClientHandshake),
    /// `connect` sent, no answer yet.
    Connecting,
    /// `connect` succeeded.
    Connected,
    /// `connect` failed.
    Failed,
}

/// The client side of one RTMP connection.
#[derive(Debug)]
pub struct ClientSession {
    /// Settings.
    config: ClientConfig,
    /// Progress.
    phase: Phase,
    /// Input not yet processed.
    input: BytesMut,
    /// Server's chunk stream.
    decoder: ChunkDecoder,
    /// Our chunk stream and pending output.
    out: Outbox,
    /// Events not yet polled.
    events: VecDeque<ClientEvent>,
    /// Calls awaiting `_result` / `_error`, by transaction id.
    calls: HashMap<u64, String>,
    /// Last transaction id used (connect is 1).
    last_transaction: u64,
    /// Acknowledgement bookkeeping.
    acks: AckCounter,
}

impl ClientSession {
    /// Starts a session: C0+C1 are in the output at once.
    pub fn new(config: ClientConfig, epoch: u32, random: &[u8; RANDOM_LEN]) -> Self {
        let mut out = Outbox::default();
        let handshake =
            ClientHandshake::start(epoch, random, config.digest_handshake, &mut out.buf);
        ClientSession {
            decoder: ChunkDecoder::new(config.decoder_limits),
            config,
            phase: Phase::Handshake(handshake),
            input: BytesMut::new(),
            out,
            events: VecDeque::new(),
            calls: HashMap::new(),
            last_transaction: 0,
            acks: AckCounter::default(),
        }
    }

    /// Feeds bytes read from the socket and processes them. An error is fatal to the
    /// connection.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.acks.received += data.len() as u64;
        self.input.extend_from_slice(data);
        loop {
            if let Phase::Handshake(handshake) = &mut self.phase {
                let Some(done) = handshake.read(&mut self.input, &mut self.out.buf)? else {
                    break;
                };
                self.events.push_back(ClientEvent::HandshakeDone(done));
                self.send_connect()?;
                continue;
            }
            let Some(raw) = self.decoder.decode(&mut self.input)? else {
                break;
            };
            self.handle_message(raw)?;
        }
        self.acks.maybe_ack(&mut self.out)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
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

    /// Whether `connect` succeeded.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected)
    }

    /// Sends `createStream`; the id arrives as [`ClientEvent::StreamCreated`].
    pub fn create_stream(&mut self) -> Result<(), SessionError> {
        self.call("createStream", Vec::new()).map(drop)
    }

    /// Sends `releaseStream(name)` (what FFmpeg and OBS do before publishing).
    pub fn release_stream(&mut self, name: &str) -> Result<(), SessionError> {
        self.call("releaseStream", vec![Amf0Value::string(name)])
            .map(drop)
    }

    /// Sends `FCPublish(name)`.
    pub fn fc_publish(&mut self, name: &str) -> Result<(), SessionError> {
        self.call("FCPublish", vec![Amf0Value::string(name)])
            .map(drop)
    }

    /// Sends `FCUnpublish(name)`.
    pub fn fc_unpublish(&mut self, name: &str) -> Result<(), SessionError> {
        self.call("FCUnpublish", vec![Amf0Value::string(name)])
            .map(drop)
    }

    /// Sends any command on stream 0 with a fresh transaction id and returns that id.
    pub fn call(&mut self, name: &str, args: Vec<Amf0Value>) -> Result<u64, SessionError> {
        self.check_connected()?;
        self.last_transaction += 1;
        let txn = self.last_transaction;
        self.calls.insert(txn, name.to_owned());
        self.out
            .command(0, name, txn as f64, Amf0Value::Null, args)?;
        Ok(txn)
    }

    /// Sends `publish(name, kind)` on `stream_id`; the answer is a [`ClientEvent::Status`].
    pub fn publish(
        &mut self,
        stream_id: u32,
        name: &str,
        kind: PublishKind,
    ) -> Result<(), SessionError> {
        self.check_connected()?;
        let kind = match kind {
            PublishKind::Live => "live",
            PublishKind::Record => "record",
            PublishKind::Append => "append",
        };
        let args = vec![Amf0Value::string(name), Amf0Value::string(kind)];
        self.out
            .command(stream_id, "publish", 0.0, Amf0Value::Null, args)
    }

    /// Sends `play(name, -2)` on `stream_id` (after a Set Buffer Length of 3 s, as FFmpeg does).
    pub fn play(&mut self, stream_id: u32, name: &str) -> Result<(), SessionError> {
        self.check_connected()?;
        let buffer = UserControl::SetBufferLength {
            stream_id,
            buffer_ms: 3000,
        };
        self.out
            .send(CSID_CONTROL, 0, 0, &Message::UserControl(buffer))?;
        let args = vec![Amf0Value::string(name), Amf0Value::Number(-2.0)];
        self.out
            .command(stream_id, "play", 0.0, Amf0Value::Null, args)
    }

    /// Sends `deleteStream(stream_id)` on stream 0.
    pub fn delete_stream(&mut self, stream_id: u32) -> Result<(), SessionError> {
        self.check_connected()?;
        let args = vec![Amf0Value::Number(f64::from(stream_id))];
        self.out
            .command(0, "deleteStream", 0.0, Amf0Value::Null, args)
    }

    /// Sends `closeStream` on `stream_id`.
    pub fn close_stream(&mut self, stream_id: u32) -> Result<(), SessionError> {
        self.check_connected()?;
        self.out
            .command(stream_id, "closeStream", 0.0, Amf0Value::Null, Vec::new())
    }

    /// Sends an audio frame (FLV audio tag body).
    pub fn send_audio(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        payload: &Bytes,
    ) -> Result<(), SessionError> {
        self.check_connected()?;
        self.out
            .send_body(CSID_AUDIO, type_id::AUDIO, timestamp, stream_id, payload)
    }

    /// Sends a video frame (FLV video tag body).
    pub fn send_video(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        payload: &Bytes,
    ) -> Result<(), SessionError> {
        self.check_connected()?;
        self.out
            .send_body(CSID_VIDEO, type_id::VIDEO, timestamp, stream_id, payload)
    }

    /// Sends metadata as publishers do: `@setDataFrame, onMetaData, metadata`.
    pub fn send_metadata(
        &mut self,
        stream_id: u32,
        metadata: Amf0Value,
    ) -> Result<(), SessionError> {
        self.check_connected()?;
        let values = vec![
            Amf0Value::string("@setDataFrame"),
            Amf0Value::string("onMetaData"),
            metadata,
        ];
        self.out
            .send(CSID_STREAM, 0, stream_id, &Message::Data(values))
    }

    /// Sends any message (tests use it for protocol control and odd commands).
    pub fn send_message(
        &mut self,
        csid: u32,
        stream_id: u32,
        message: &Message,
    ) -> Result<(), SessionError> {
        self.out.send(csid, 0, stream_id, message)
    }

    /// Fails unless connect succeeded.
    fn check_connected(&self) -> Result<(), SessionError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(SessionError::NotReady)
        }
    }

    /// Sends our chunk size and `connect` right after the handshake.
    fn send_connect(&mut self) -> Result<(), SessionError> {
        if self.config.chunk_size != self.out.encoder.chunk_size() {
            self.out
                .encoder
                .write_set_chunk_size(self.config.chunk_size, &mut self.out.buf)?;
        }
        let object = Amf0Value::object([
            ("app", Amf0Value::string(self.config.app.as_str())),
            ("type", Amf0Value::string("nonprivate")),
            (
                "flashVer",
                Amf0Value::string(self.config.flash_ver.as_str()),
            ),
            ("tcUrl", Amf0Value::string(self.config.tc_url.as_str())),
        ]);
        self.last_transaction = 1;
        self.calls.insert(1, "connect".into());
        self.phase = Phase::Connecting;
        self.out.command(0, "connect", 1.0, object, Vec::new())
    }

    /// Acts on one message from the server.
    fn handle_message(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let message = Message::decode(raw.type_id, &raw.payload, self.config.amf0_limits)?;
        let stream_id = raw.stream_id;
        let timestamp = raw.timestamp;
        match message {
            Message::WindowAckSize(window) => self.acks.window = Some(window),
            Message::SetPeerBandwidth { size, .. } => {
                self.out
                    .send(CSID_CONTROL, 0, 0, &Message::WindowAckSize(size))?;
            }
            Message::UserControl(UserControl::PingRequest(ts)) => {
                let pong = Message::UserControl(UserControl::PingResponse(ts));
                self.out.send(CSID_CONTROL, 0, 0, &pong)?;
            }
            Message::UserControl(event) => self.events.push_back(ClientEvent::UserControl(event)),
            Message::Audio(payload) => self.events.push_back(ClientEvent::Audio {
                stream_id,
                timestamp,
                payload,
            }),
            Message::Video(payload) => self.events.push_back(ClientEvent::Video {
                stream_id,
                timestamp,
                payload,
            }),
            Message::Data(values) => match values.as_slice() {
                [name, info, ..] if name.as_str() == Some("onStatus") => {
                    self.events.push_back(status_event(stream_id, info));
                }
                _ => self.events.push_back(ClientEvent::Data {
                    stream_id,
                    timestamp,
                    values,
                }),
            },
            Message::Command(command) => self.handle_command(stream_id, command)?,
            _ => {}
        }
        Ok(())
    }

    /// Acts on one command from the server.
    fn handle_command(&mut self, stream_id: u32, command: Command) -> Result<(), SessionError> {
        let error = match command.name.as_str() {
            "_result" => false,
            "_error" => true,
            "onStatus" => {
                let info = command.args.first().unwrap_or(&Amf0Value::Null);
                self.events.push_back(status_event(stream_id, info));
                return Ok(());
            }
            _ => {
                self.events
                    .push_back(ClientEvent::Command { stream_id, command });
                return Ok(());
            }
        };
        let call = self.calls.remove(&(command.transaction_id as u64));
        let information = command.args.first().cloned().unwrap_or(Amf0Value::Null);
        let event = match (call.as_deref(), error) {
            (Some("connect"), false) => {
                self.phase = Phase::Connected;
                ClientEvent::Connected { information }
            }
            (Some("connect"), true) => {
                self.phase = Phase::Failed;
                ClientEvent::ConnectFailed { information }
            }
            (Some("createStream"), false) => match arg_f64(&command.args, 0) {
                Some(id) if id >= 1.0 && id <= f64::from(u32::MAX) => ClientEvent::StreamCreated {
                    stream_id: id as u32,
                },
                _ => return Err(SessionError::UnknownStream(0)),
            },
            _ => {
                let mut values = vec![command.command_object];
                values.extend(command.args);
                ClientEvent::CallResult {
                    call,
                    error,
                    values,
                }
            }
        };
        self.events.push_back(event);
        Ok(())
    }
}

/// A [`ClientEvent::Status`] from an onStatus information object.
fn status_event(stream_id: u32, info: &Amf0Value) -> ClientEvent {
    let text = |key: &str| {
        info.property(key)
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    ClientEvent::Status {
        stream_id,
        level: text("level"),
        code: text("code"),
        description: text("description"),
    }
}
