//! Typed RTMP messages: [`Message`] from and to a chunk layer [`RawMessage`].
//!
//! Decoding looks at the type id and parses the body: protocol control (1-6), user control
//! events (4), audio/video (8/9, bodies kept as FLV tag bodies, untouched and uncopied), data and
//! commands in AMF0 (18/20) or in their AMF3 envelope (15/17: a leading format byte, then AMF0,
//! which is all FFmpeg/OBS/Flash ever put there). Other types come back as [`Message::Other`].
//! Encoding produces the body and type id; the session chooses the chunk stream and timestamp.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::amf0::{Amf0Decoder, Amf0Error, Amf0Limits, Amf0Value};
use super::chunk::RawMessage;

/// RTMP message type ids.
pub mod type_id {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message in the AMF3 envelope.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message in AMF3 (not supported).
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message in the AMF3 envelope.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message in AMF0 (metadata, `@setDataFrame`).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object message in AMF0 (not supported).
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message in AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (several FLV tags in one message).
    pub const AGGREGATE: u8 = 22;
}

/// How the peer should limit its output after Set Peer Bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthLimit {
    /// Limit output to the window size.
    Hard,
    /// Limit output to this window or the one in effect, whichever is smaller.
    Soft,
    /// Hard if the previous limit was hard, else ignore.
    Dynamic,
}

/// User Control Message events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// A stream became functional (sent before media on it).
    StreamBegin(u32),
    /// Playback of a stream ended.
    StreamEof(u32),
    /// No more data on a stream for now.
    StreamDry(u32),
    /// The client's buffer length for a stream, in milliseconds.
    SetBufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        buffer_ms: u32,
    },
    /// The stream is a recorded one.
    StreamIsRecorded(u32),
    /// Server asks the client to echo this timestamp.
    PingRequest(u32),
    /// Client's answer to a ping request.
    PingResponse(u32),
    /// An event type we do not interpret (e.g. FMS buffer-empty events, SWF verification).
    Other {
        /// Event type.
        event_type: u16,
        /// Event data.
        data: Bytes,
    },
}

/// A command: a remote procedure call or its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Procedure name (`connect`, `_result`, `onStatus`, ...).
    pub name: String,
    /// Transaction id; 0 means "no answer expected".
    pub transaction_id: f64,
    /// The command object (an Object, or Null for most stream commands).
    pub command_object: Amf0Value,
    /// Remaining arguments.
    pub args: Vec<Amf0Value>,
}

/// A typed RTMP message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Set Chunk Size.
    SetChunkSize(u32),
    /// Abort the partial message on a chunk stream.
    Abort {
        /// The chunk stream id.
        csid: u32,
    },
    /// Bytes received so far (mod 2^32).
    Acknowledgement {
        /// Sequence number: total bytes received.
        sequence: u32,
    },
    /// Window after which the peer should acknowledge.
    WindowAckSize(u32),
    /// Limit on the peer's output bandwidth.
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// Limit type.
        limit: BandwidthLimit,
    },
    /// User Control event.
    UserControl(UserControl),
    /// Audio: an FLV audio tag body.
    Audio(Bytes),
    /// Video: an FLV video tag body.
    Video(Bytes),
    /// Data message (AMF0 values).
    Data(Vec<Amf0Value>),
    /// Command message.
    Command(Command),
    /// Any other message type (shared objects, aggregate), body untouched.
    Other {
        /// Message type id.
        type_id: u8,
        /// Body.
        payload: Bytes,
    },
}

/// Errors decoding a message body.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// A control message body was shorter than its type requires.
    #[error("message type {type_id} body of {length} bytes is too short")]
    TooShort {
        /// Message type id.
        type_id: u8,
        /// Body length.
        length: usize,
    },
    /// Set Peer Bandwidth named an unknown limit type.
    #[error("unknown Set Peer Bandwidth limit type {0}")]
    BadLimitType(u8),
    /// A data or command body was not valid AMF0.
    #[error("bad AMF0 in message type {type_id}")]
    Amf0 {
        /// Message type id.
        type_id: u8,
        /// What was wrong.
        #[source]
        source: Amf0Error,
    },
    /// A command did not start with a name string (and a numeric transaction id, if any).
    #[error("command message without a name, or with a non-numeric transaction id")]
    BadCommand,
    /// An AMF3-envelope message did not start with the AMF0 format byte 0.
    #[error(
        "AMF3 message type {type_id} with format byte {format} (only AMF0 content is supported)"
    )]
    Amf3Content {
        /// Message type id.
        type_id: u8,
        /// The leading format byte.
        format: u8,
    },
}

/// Reads a big-endian u32 from the front of a body.
fn body_u32(type_id: u8, mut body: &[u8]) -> Result<u32, MessageError> {
    if body.len() < 4 {
        return Err(MessageError::TooShort {
            type_id,
            length: body.len(),
        });
    }
    Ok(body.get_u32())
}

impl Message {
    /// Interprets a raw message with default AMF0 limits.
    pub fn from_raw(raw: &RawMessage) -> Result<Message, MessageError> {
        Self::decode(raw.type_id, &raw.payload, Amf0Limits::default())
    }

    /// Interprets a message body of type `type_id`.
    pub fn decode(
        type_id: u8,
        payload: &Bytes,
        limits: Amf0Limits,
    ) -> Result<Message, MessageError> {
        let body = &payload[..];
        Ok(match type_id {
            type_id::SET_CHUNK_SIZE => Message::SetChunkSize(body_u32(type_id, body)?),
            type_id::ABORT => Message::Abort {
                csid: body_u32(type_id, body)?,
            },
            type_id::ACKNOWLEDGEMENT => Message::Acknowledgement {
                sequence: body_u32(type_id, body)?,
            },
            type_id::WINDOW_ACK_SIZE => Message::WindowAckSize(body_u32(type_id, body)?),
            type_id::SET_PEER_BANDWIDTH => {
                let size = body_u32(type_id, body)?;
                let limit = match body.get(4) {
                    Some(0) => BandwidthLimit::Hard,
                    Some(1) => BandwidthLimit::Soft,
                    Some(2) => BandwidthLimit::Dynamic,
                    Some(&other) => return Err(MessageError::BadLimitType(other)),
                    None => {
                        return Err(MessageError::TooShort {
                            type_id,
                            length: body.len(),
                        });
                    }
                };
                Message::SetPeerBandwidth { size, limit }
            }
            type_id::USER_CONTROL => Message::UserControl(decode_user_control(payload)?),
            type_id::AUDIO => Message::Audio(payload.clone()),
            type_id::VIDEO => Message::Video(payload.clone()),
            type_id::DATA_AMF0 => Message::Data(decode_amf0(type_id, body, limits)?),
            type_id::DATA_AMF3 => {
                Message::Data(decode_amf0(type_id, amf3_body(type_id, body)?, limits)?)
            }
            type_id::COMMAND_AMF0 => Message::Command(decode_command(type_id, body, limits)?),
            type_id::COMMAND_AMF3 => {
                Message::Command(decode_command(type_id, amf3_body(type_id, body)?, limits)?)
            }
            other => Message::Other {
                type_id: other,
                payload: payload.clone(),
            },
        })
    }

    /// The message type id this message is sent with (AMF0 flavour for data and commands).
    pub fn type_id(&self) -> u8 {
        match self {
            Message::SetChunkSize(_) => type_id::SET_CHUNK_SIZE,
            Message::Abort { .. } => type_id::ABORT,
            Message::Acknowledgement { .. } => type_id::ACKNOWLEDGEMENT,
            Message::WindowAckSize(_) => type_id::WINDOW_ACK_SIZE,
            Message::SetPeerBandwidth { .. } => type_id::SET_PEER_BANDWIDTH,
            Message::UserControl(_) => type_id::USER_CONTROL,
            Message::Audio(_) => type_id::AUDIO,
            Message::Video(_) => type_id::VIDEO,
            Message::Data(_) => type_id::DATA_AMF0,
            Message::Command(_) => type_id::COMMAND_AMF0,
            Message::Other { type_id, .. } => *type_id,
        }
    }

    /// The encoded body.
    pub fn encode_payload(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Message::SetChunkSize(size) => out.put_u32(*size & 0x7FFF_FFFF),
            Message::Abort { csid } => out.put_u32(*csid),
            Message::Acknowledgement { sequence } => out.put_u32(*sequence),
            Message::WindowAckSize(size) => out.put_u32(*size),
            Message::SetPeerBandwidth { size, limit } => {
                out.put_u32(*size);
                out.put_u8(match limit {
                    BandwidthLimit::Hard => 0,
                    BandwidthLimit::Soft => 1,
                    BandwidthLimit::Dynamic => 2,
                });
            }
            Message::UserControl(event) => encode_user_control(event, &mut out),
            Message::Audio(body) | Message::Video(body) | Message::Other { payload: body, .. } => {
                return body.clone();
            }
            Message::Data(values) => values.iter().for_each(|v| v.encode(&mut out)),
            Message::Command(command) => {
                Amf0Value::String(command.name.clone()).encode(&mut out);
                Amf0Value::Number(command.transaction_id).encode(&mut out);
                command.command_object.encode(&mut out);
                command.args.iter().for_each(|v| v.encode(&mut out));
            }
        }
        out.freeze()
    }

    /// A raw message ready for the chunk encoder.
    pub fn to_raw(&self, csid: u32, timestamp: u32, stream_id: u32) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id: self.type_id(),
            stream_id,
            payload: self.encode_payload(),
        }
    }
}

/// The AMF0 part of an AMF3-envelope body (after its format byte 0).
fn amf3_body(type_id: u8, body: &[u8]) -> Result<&[u8], MessageError> {
    match body.split_first() {
        Some((0, rest)) => Ok(rest),
        Some((&format, _)) => Err(MessageError::Amf3Content { type_id, format }),
        None => Err(MessageError::TooShort { type_id, length: 0 }),
    }
}

/// Decodes all AMF0 values of a body.
fn decode_amf0(
    type_id: u8,
    body: &[u8],
    limits: Amf0Limits,
) -> Result<Vec<Amf0Value>, MessageError> {
    Amf0Decoder::new(body, limits)
        .decode_all()
        .map_err(|source| MessageError::Amf0 { type_id, source })
}

/// Decodes a command body: name, transaction id, command object, arguments.
fn decode_command(type_id: u8, body: &[u8], limits: Amf0Limits) -> Result<Command, MessageError> {
    let mut values = decode_amf0(type_id, body, limits)?.into_iter();
    let Some(Amf0Value::String(name)) = values.next() else {
        return Err(MessageError::BadCommand);
    };
    // FFmpeg's server sends onFCPublish as a bare name: no transaction id means 0.
    let transaction_id = match values.next() {
        Some(Amf0Value::Number(id)) => id,
        None => 0.0,
        Some(_) => return Err(MessageError::BadCommand),
    };
    // FFmpeg omits the command object of some stream commands; treat it as Null.
    let command_object = values.next().unwrap_or(Amf0Value::Null);
    Ok(Command {
        name,
        transaction_id,
        command_object,
        args: values.collect(),
    })
}

/// User control event type numbers.
mod event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Decodes a User Control Message body.
fn decode_user_control(payload: &Bytes) -> Result<UserControl, MessageError> {
    let too_short = || MessageError::TooShort {
        type_id: type_id::USER_CONTROL,
        length: payload.len(),
    };
    let mut body = &payload[..];
    if body.len() < 2 {
        return Err(too_short());
    }
    let event_type = body.get_u16();
    let mut word = || {
        if body.len() < 4 {
            return Err(too_short());
        }
        Ok(body.get_u32())
    };
    Ok(match event_type {
        event::STREAM_BEGIN => UserControl::StreamBegin(word()?),
        event::STREAM_EOF => UserControl::StreamEof(word()?),
        event::STREAM_DRY => UserControl::StreamDry(word()?),
        event::SET_BUFFER_LENGTH => UserControl::SetBufferLength {
            stream_id: word()?,
            buffer_ms: word()?,
        },
        event::STREAM_IS_RECORDED => UserControl::StreamIsRecorded(word()?),
        event::PING_REQUEST => UserControl::PingRequest(word()?),
        event::PING_RESPONSE => UserControl::PingResponse(word()?),
        other => UserControl::Other {
            event_type: other,
            data: payload.slice(2..),
        },
    })
}

/// Encodes a User Control Message body.
fn encode_user_control(event: &UserControl, out: &mut BytesMut) {
    let (event_type, words): (u16, &[u32]) = match event {
        UserControl::StreamBegin(id) => (event::STREAM_BEGIN, std::slice::from_ref(id)),
        UserControl::StreamEof(id) => (event::STREAM_EOF, std::slice::from_ref(id)),
        UserControl::StreamDry(id) => (event::STREAM_DRY, std::slice::from_ref(id)),
        UserControl::SetBufferLength {
            stream_id,
            buffer_ms,
        } => {
            out.put_u16(event::SET_BUFFER_LENGTH);
            out.put_u32(*stream_id);
            out.put_u32(*buffer_ms);
            return;
        }
        UserControl::StreamIsRecorded(id) => (event::STREAM_IS_RECORDED, std::slice::from_ref(id)),
        UserControl::PingRequest(ts) => (event::PING_REQUEST, std::slice::from_ref(ts)),
        UserControl::PingResponse(ts) => (event::PING_RESPONSE, std::slice::from_ref(ts)),
        UserControl::Other { event_type, data } => {
            out.put_u16(*event_type);
            out.put_slice(data);
            return;
        }
    };
    out.put_u16(event_type);
    words.iter().for_each(|w| out.put_u32(*w));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: Message) {
        let raw = message.to_raw(3, 0, 1);
        assert_eq!(Message::from_raw(&raw).unwrap(), message);
    }

    #[test]
    fn control_messages_round_trip() {
        round_trip(Message::SetChunkSize(4096));
        round_trip(Message::Abort { csid: 6 });
        round_trip(Message::Acknowledgement { sequence: 123_456 });
        round_trip(Message::WindowAckSize(2_500_000));
        round_trip(Message::SetPeerBandwidth {
            size: 2_500_000,
            limit: BandwidthLimit::Dynamic,
        });
        for event in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(1),
            UserControl::StreamDry(1),
            UserControl::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(99),
            UserControl::PingResponse(99),
            UserControl::Other {
                event_type: 31,
                data: Bytes::from_static(&[0, 0, 0, 1]),
            },
        ] {
            round_trip(Message::UserControl(event));
        }
    }

    #[test]
    fn user_control_fixture() {
        // event type 3 (SetBufferLength), stream id 1, buffer 3000 ms
        let raw = RawMessage {
            csid: 2,
            timestamp: 0,
            type_id: 4,
            stream_id: 0,
            payload: Bytes::from_static(&[0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8]),
        };
        assert_eq!(
            Message::from_raw(&raw).unwrap(),
            Message::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000
            })
        );
    }

    #[test]
    fn commands_round_trip_and_amf3_envelope_is_read() {
        let command = Command {
            name: "publish".into(),
            transaction_id: 5.0,
            command_object: Amf0Value::Null,
            args: vec![Amf0Value::string("key"), Amf0Value::string("live")],
        };
        round_trip(Message::Command(command.clone()));
        let amf0 = Message::Command(command.clone()).encode_payload();
        let mut amf3 = vec![0u8]; // format byte: AMF0 follows
        amf3.extend_from_slice(&amf0);
        let decoded = Message::decode(17, &Bytes::from(amf3), Amf0Limits::default()).unwrap();
        assert_eq!(decoded, Message::Command(command));
        round_trip(Message::Data(vec![Amf0Value::string("onMetaData")]));
    }

    #[test]
    fn bare_command_name_has_transaction_id_zero() {
        // FFmpeg's listen mode sends onFCPublish as just the name.
        let body = Bytes::from_static(&[
            0x02, 0x00, 0x0B, b'o', b'n', b'F', b'C', b'P', b'u', b'b', b'l', b'i', b's', b'h',
        ]);
        let message = Message::decode(20, &body, Amf0Limits::default()).unwrap();
        assert_eq!(
            message,
            Message::Command(Command {
                name: "onFCPublish".into(),
                transaction_id: 0.0,
                command_object: Amf0Value::Null,
                args: vec![],
            })
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        let short = Message::decode(1, &Bytes::from_static(&[0, 0]), Amf0Limits::default());
        assert!(matches!(short, Err(MessageError::TooShort { .. })));
        let no_name = Message::decode(20, &Bytes::from_static(&[0x05]), Amf0Limits::default());
        assert!(matches!(no_name, Err(MessageError::BadCommand)));
        // Name, then a string where the transaction id belongs.
        let bad_id = Bytes::from_static(&[0x02, 0, 1, b'x', 0x02, 0, 1, b'y']);
        let bad_id = Message::decode(20, &bad_id, Amf0Limits::default());
        assert!(matches!(bad_id, Err(MessageError::BadCommand)));
        let amf3 = Message::decode(
            17,
            &Bytes::from_static(&[0x11, 0x05]),
            Amf0Limits::default(),
        );
        assert!(matches!(
            amf3,
            Err(MessageError::Amf3Content { format: 0x11, .. })
        ));
        let bad_limit = Message::decode(
            6,
            &Bytes::from_static(&[0, 0, 0, 1, 9]),
            Amf0Limits::default(),
        );
        assert!(matches!(bad_limit, Err(MessageError::BadLimitType(9))));
    }
}
