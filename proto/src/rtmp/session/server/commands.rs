//! Command and message handling of [`ServerSession`]: what the session does with each message
//! the client sends once the handshake is over (answers chores itself, turns connect / publish /
//! play into questions for the application, reports media and metadata of accepted publishers).

use bytes::Bytes;

use super::{Pending, Phase, PublishKind, ServerEvent, ServerSession, StreamState};
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::chunk::RawMessage;
use crate::rtmp::message::{Command, Message, UserControl, type_id};
use crate::rtmp::session::{SessionError, arg_f64, arg_str, status};

impl ServerSession {
    /// Acts on one message from the client.
    pub(super) fn handle_message(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let message = match Message::decode(raw.type_id, &raw.payload, self.config.amf0_limits) {
            Ok(message) => message,
            // Data messages are optional extras (metadata, cue points); one that uses AMF0 we
            // do not decode is dropped instead of ending the connection.
            Err(_) if matches!(raw.type_id, type_id::DATA_AMF0 | type_id::DATA_AMF3) => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let stream_id = raw.stream_id;
        let publishing = matches!(
            self.streams.get(&stream_id),
            Some(StreamState::Publishing { .. })
        );
        match message {
            Message::WindowAckSize(window) => self.acks.window = Some(window),
            Message::UserControl(UserControl::PingRequest(timestamp)) => {
                self.send_user_control(UserControl::PingResponse(timestamp))?;
            }
            Message::Audio(payload) if publishing && !payload.is_empty() => {
                self.events.push_back(ServerEvent::Audio {
                    stream_id,
                    timestamp: raw.timestamp,
                    payload,
                })
            }
            Message::Video(payload) if publishing && !payload.is_empty() => {
                self.events.push_back(ServerEvent::Video {
                    stream_id,
                    timestamp: raw.timestamp,
                    payload,
                })
            }
            Message::Data(values) if publishing => {
                if let Some(payload) = metadata_body(&values, &raw.payload) {
                    self.events.push_back(ServerEvent::Metadata {
                        stream_id,
                        timestamp: raw.timestamp,
                        payload,
                    });
                }
            }
            Message::Command(command) => self.handle_command(stream_id, command)?,
            // Chunk size and abort were applied by the decoder; acknowledgements, bandwidth,
            // other user control events, media of streams that are not publishing, empty media
            // messages (no FLV tag body is empty), shared objects and aggregates need nothing
            // from us.
            _ => {}
        }
        Ok(())
    }

    /// Acts on one command from the client.
    fn handle_command(&mut self, stream_id: u32, command: Command) -> Result<(), SessionError> {
        let txn = command.transaction_id;
        let args = &command.args;
        match command.name.as_str() {
            "connect" => {
                if !matches!(self.phase, Phase::AwaitConnect) {
                    return Err(SessionError::DuplicateConnect);
                }
                let object = command.command_object;
                let text = |key: &str| {
                    object
                        .property(key)
                        .and_then(Amf0Value::as_str)
                        .map(str::to_owned)
                };
                let object_encoding = object
                    .property("objectEncoding")
                    .and_then(Amf0Value::as_f64)
                    .unwrap_or(0.0);
                self.pending = Some(Pending::Connect {
                    transaction_id: txn,
                    object_encoding,
                });
                self.events.push_back(ServerEvent::Connect {
                    app: text("app").unwrap_or_default(),
                    tc_url: text("tcUrl"),
                    flash_ver: text("flashVer"),
                    command_object: object,
                });
                return Ok(());
            }
            _ if !matches!(self.phase, Phase::Connected) => {
                return Err(SessionError::NotConnected(command.name));
            }
            "createStream" => {
                if self.streams.len() >= self.config.max_streams {
                    let info = status("error", "NetConnection.Call.Failed", "Too many streams.");
                    return self
                        .out
                        .command(0, "_error", txn, Amf0Value::Null, vec![info]);
                }
                let id = self.next_stream_id;
                // Ids are never reused; u32 overflow would take 4 billion createStream calls.
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.streams.insert(id, StreamState::Idle);
                let result = vec![Amf0Value::Number(f64::from(id))];
                self.out
                    .command(0, "_result", txn, Amf0Value::Null, result)?;
            }
            "releaseStream" | "getStreamLength" | "checkBandwidth" | "_checkbw" if txn > 0.0 => {
                let result = match command.name.as_str() {
                    "getStreamLength" => vec![Amf0Value::Number(0.0)],
                    _ => vec![Amf0Value::Undefined],
                };
                self.out
                    .command(0, "_result", txn, Amf0Value::Null, result)?;
            }
            "FCPublish" => {
                let name = arg_str(args, 0).unwrap_or_default();
                let info = Amf0Value::object([
                    ("code", Amf0Value::string("NetStream.Publish.Start")),
                    ("description", Amf0Value::string(name)),
                ]);
                self.out
                    .command(0, "onFCPublish", 0.0, Amf0Value::Null, vec![info])?;
            }
            "FCUnpublish" => {
                let name = arg_str(args, 0).unwrap_or_default().to_owned();
                let found = self.streams.iter().find_map(|(id, state)| match state {
                    StreamState::Publishing { name: n } if *n == name => Some(*id),
                    _ => None,
                });
                if let Some(id) = found {
                    self.end_stream(id, true);
                }
                let info = Amf0Value::object([
                    ("code", Amf0Value::string("NetStream.Unpublish.Success")),
                    ("description", Amf0Value::string(name)),
                ]);
                self.out
                    .command(0, "onFCUnpublish", 0.0, Amf0Value::Null, vec![info])?;
            }
            "publish" => {
                self.check_idle(stream_id)?;
                let name = arg_str(args, 0).unwrap_or_default().to_owned();
                let kind = match arg_str(args, 1) {
                    Some("record") => PublishKind::Record,
                    Some("append" | "appendWithGap") => PublishKind::Append,
                    _ => PublishKind::Live,
                };
                self.pending = Some(Pending::Publish {
                    stream_id,
                    name: name.clone(),
                });
                self.events.push_back(ServerEvent::Publish {
                    stream_id,
                    name,
                    kind,
                });
            }
            "play" => {
                self.check_idle(stream_id)?;
                let name = arg_str(args, 0).unwrap_or_default().to_owned();
                let reset = !matches!(args.get(3), Some(Amf0Value::Boolean(false)));
                self.pending = Some(Pending::Play {
                    stream_id,
                    name: name.clone(),
                    reset,
                });
                self.events.push_back(ServerEvent::Play {
                    stream_id,
                    name,
                    start: arg_f64(args, 1).unwrap_or(-2.0),
                    duration: arg_f64(args, 2).unwrap_or(-1.0),
                    reset,
                });
            }
            "deleteStream" => {
                // The stream id is the first argument (the message itself is on stream 0).
                if let Some(id) = arg_f64(args, 0).map(|id| id as u32) {
                    self.end_stream(id, false);
                }
            }
            "closeStream" => self.end_stream(stream_id, true),
            // Answers to our calls and playback controls we do not implement.
            "_result" | "_error" | "onStatus" | "pause" | "seek" | "receiveAudio"
            | "receiveVideo" => {}
            _ if txn > 0.0 => {
                let info = status(
                    "error",
                    "NetConnection.Call.Failed",
                    &format!("Method not found ({}).", command.name),
                );
                self.out
                    .command(0, "_error", txn, Amf0Value::Null, vec![info])?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends what a stream does (reporting Unpublish / PlayStop); keeps it if `keep`.
    fn end_stream(&mut self, stream_id: u32, keep: bool) {
        let state = if keep {
            self.streams
                .get_mut(&stream_id)
                .map(|s| std::mem::replace(s, StreamState::Idle))
        } else {
            self.streams.remove(&stream_id)
        };
        match state {
            Some(StreamState::Publishing { .. }) => {
                self.events.push_back(ServerEvent::Unpublish { stream_id });
            }
            Some(StreamState::Playing) => {
                self.events.push_back(ServerEvent::PlayStop { stream_id });
            }
            _ => {}
        }
    }
}

/// The body to forward to players for a publisher's data message, if it is metadata:
/// `@setDataFrame, onMetaData, {..}` is re-encoded without its first value; a plain
/// `onMetaData, {..}` is kept as it is. Anything else is not metadata.
fn metadata_body(values: &[Amf0Value], raw: &Bytes) -> Option<Bytes> {
    match values {
        [first, rest @ ..] if first.as_str() == Some("@setDataFrame") => {
            (rest.first()?.as_str() == Some("onMetaData")).then(|| amf0::encode_all(rest).freeze())
        }
        [first, ..] if first.as_str() == Some("onMetaData") => Some(raw.clone()),
        _ => None,
    }
}
