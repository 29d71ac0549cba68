//! The opening of a WebSocket session whose stream is named in a message, not in the URL (Ant
//! Media's signalling: `/{app}/websocket`, then `{"command":"play","streamId":"..."}`), read by
//! the LB so that it can place the session by stream before it picks a server.
//!
//! Data flow: the LB answers the upgrade itself ([`write_accept`]: no extension, no
//! subprotocol), then feeds the client's bytes to an [`OpeningReader`]. Frame heads are parsed by
//! tungstenite's `FrameHeader` (the same parser the nodes' sockets use); each whole client
//! frame is checked (masked, no reserved bits, under [`MAX_MESSAGE`], unfragmented text) and
//! then: a WebSocket ping gets its pong and Ant Media's JSON `ping` its `pong`
//! ([`Opening::Answer`], not kept), a text message without a `streamId` (say
//! `getIceServerConfig`) is kept for the server, and the first text message with a `streamId`
//! ends the opening ([`Opening::Stream`]). The frames kept, in the client's own masked bytes,
//! are replayed to the chosen server ([`OpeningReader::into_replay`]) before the two sides are
//! spliced. Anything else is an [`OpeningError`], answered with a close frame
//! ([`OpeningError::close_code`], [`write_close`]).

use std::io::Cursor;

use bytes::{Buf, BufMut, BytesMut};
use serde_json::Value;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Largest message read before the stream is known (Ant Media's signalling messages before
/// `play` are tiny; the nodes take 64 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Messages without a stream id kept for the server before one names the stream.
pub const MAX_HELD: usize = 16;
/// Bytes of kept messages (their frames as sent).
pub const MAX_REPLAY: usize = 64 * 1024;
/// Longest stream id accepted (as the nodes' signalling).
pub const MAX_STREAM_ID: usize = 256;
/// Longest control frame payload (RFC 6455 section 5.5).
const MAX_CONTROL: u64 = 125;

/// Close codes (RFC 6455 section 7.4.1).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (the LB is draining).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// A data type the endpoint does not accept (binary).
    pub const UNSUPPORTED: u16 = 1003;
    /// Data inconsistent with its type (text that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// A message that violates the endpoint's policy (not the expected JSON, too slow).
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// The server met an unexpected condition (no upstream could take the session).
    pub const INTERNAL: u16 = 1011;
    /// Try again later (no server is available).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// What the opening frames led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// A message named this stream; it is the last frame of the replay.
    Stream(String),
    /// Bytes to write to the client (a pong); reading goes on.
    Answer(Vec<u8>),
    /// The client closed: write these bytes (the close frame echoed) and end.
    Closed(Vec<u8>),
}

/// Why the opening is refused.
#[derive(Debug, thiserror::Error)]
pub enum OpeningError {
    /// The frame head is invalid (a reserved opcode, a bad length).
    #[error("invalid frame head")]
    Head(#[source] Box<tungstenite::Error>),
    /// A client frame without a mask (RFC 6455 section 5.1).
    #[error("a client frame is not masked")]
    Unmasked,
    /// Reserved bits set though no extension was negotiated.
    #[error("reserved bits set without an extension")]
    Reserved,
    /// A control frame over 125 bytes or fragmented.
    #[error("a control frame is fragmented or over 125 bytes")]
    Control,
    /// A message over [`MAX_MESSAGE`].
    #[error("a message of {0} bytes is over the limit of {MAX_MESSAGE}")]
    TooBig(u64),
    /// More than [`MAX_HELD`] messages (or [`MAX_REPLAY`] bytes) before one named a stream.
    #[error("too many messages before one names a stream")]
    TooManyHeld,
    /// A fragmented data message before the stream is known.
    #[error("a fragmented message before one names a stream")]
    Fragmented,
    /// A binary message before the stream is known.
    #[error("a binary message before one names a stream")]
    Binary,
    /// A text message that is not UTF-8.
    #[error("a text message is not UTF-8")]
    NotUtf8,
    /// A text message that is not a JSON object with a string `command`.
    #[error("a message is not a JSON object with a string `command`")]
    NotJson,
    /// `streamId` is not a string of 1 to [`MAX_STREAM_ID`] characters.
    #[error("`streamId` must be a string of 1 to {MAX_STREAM_ID} characters")]
    StreamId,
}

impl OpeningError {
    /// The close code the client is sent.
    pub fn close_code(&self) -> u16 {
        match self {
            OpeningError::Head(_)
            | OpeningError::Unmasked
            | OpeningError::Reserved
            | OpeningError::Control => close::PROTOCOL,
            OpeningError::TooBig(_) | OpeningError::TooManyHeld => close::TOO_BIG,
            OpeningError::Binary => close::UNSUPPORTED,
            OpeningError::NotUtf8 => close::INVALID_DATA,
            OpeningError::Fragmented | OpeningError::NotJson | OpeningError::StreamId => {
                close::POLICY
            }
        }
    }
}

/// Reads the client's frames until one names the stream.
#[derive(Debug, Default)]
pub struct OpeningReader {
    /// Frames kept for the server, as the client sent them.
    replay: BytesMut,
    /// Messages kept.
    held: usize,
}

impl OpeningReader {
    /// A reader with nothing read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes whole frames from the front of `input`. `Ok(None)`: more bytes are needed
    /// (what is left of `input` is the start of a frame).
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<Opening>, OpeningError> {
        loop {
            let mut cursor = Cursor::new(&input[..]);
            let Some((head, len)) =
                FrameHeader::parse(&mut cursor).map_err(|e| OpeningError::Head(Box::new(e)))?
            else {
                return Ok(None);
            };
            // The head is at most 14 bytes.
            let head_len = cursor.position() as usize;
            let Some(mask) = head.mask else {
                return Err(OpeningError::Unmasked);
            };
            if head.rsv1 || head.rsv2 || head.rsv3 {
                return Err(OpeningError::Reserved);
            }
            if matches!(head.opcode, OpCode::Control(_)) && (len > MAX_CONTROL || !head.is_final) {
                return Err(OpeningError::Control);
            }
            if len > MAX_MESSAGE as u64 {
                return Err(OpeningError::TooBig(len));
            }
            // `len` <= MAX_MESSAGE.
            let total = head_len + len as usize;
            if input.len() < total {
                return Ok(None);
            }
            let raw = input.split_to(total);
            let mut payload = raw[head_len..].to_vec();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match head.opcode {
                OpCode::Control(Control::Ping) => {
                    let mut out = Vec::new();
                    write_frame(OP_PONG, &payload, &mut out);
                    return Ok(Some(Opening::Answer(out)));
                }
                OpCode::Control(Control::Pong) => continue,
                OpCode::Control(Control::Close) => {
                    let mut out = Vec::new();
                    // Echo the status code only (RFC 6455 section 5.5.1).
                    write_frame(OP_CLOSE, payload.get(..2).unwrap_or_default(), &mut out);
                    return Ok(Some(Opening::Closed(out)));
                }
                OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                    return Err(OpeningError::Control);
                }
                OpCode::Data(Data::Binary) => return Err(OpeningError::Binary),
                OpCode::Data(Data::Continue) => return Err(OpeningError::Fragmented),
                OpCode::Data(Data::Text) if !head.is_final => {
                    return Err(OpeningError::Fragmented);
                }
                OpCode::Data(Data::Text) => {}
            }
            match read_message(&payload)? {
                Message::Ping => {
                    let mut out = Vec::new();
                    write_text(r#"{"command":"pong"}"#, &mut out);
                    return Ok(Some(Opening::Answer(out)));
                }
                Message::Stream(id) => {
                    self.replay.extend_from_slice(&raw);
                    return Ok(Some(Opening::Stream(id)));
                }
                Message::Other => {
                    self.held += 1;
                    if self.held > MAX_HELD || self.replay.len() + raw.len() > MAX_REPLAY {
                        return Err(OpeningError::TooManyHeld);
                    }
                    self.replay.extend_from_slice(&raw);
                }
            }
        }
    }

    /// The frames to send the server first, as the client sent them (masked).
    pub fn into_replay(self) -> BytesMut {
        self.replay
    }
}

/// What one text message is to the opening.
enum Message {
    /// Ant Media's keep-alive, answered by the LB.
    Ping,
    /// A message with a stream id.
    Stream(String),
    /// Any other command, kept for the server.
    Other,
}

fn read_message(payload: &[u8]) -> Result<Message, OpeningError> {
    let text = std::str::from_utf8(payload).map_err(|_| OpeningError::NotUtf8)?;
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return Err(OpeningError::NotJson);
    };
    let Some(Value::String(command)) = obj.get("command") else {
        return Err(OpeningError::NotJson);
    };
    match obj.get("streamId") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_STREAM_ID => {
            Ok(Message::Stream(id.clone()))
        }
        Some(_) => Err(OpeningError::StreamId),
        None if command == "ping" => Ok(Message::Ping),
        None => Ok(Message::Other),
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// Writes one final, unmasked (server) frame.
fn write_frame(opcode: u8, payload: &[u8], dst: &mut impl BufMut) {
    dst.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => dst.put_u8(n as u8),
        n @ 126..=0xFFFF => {
            dst.put_u8(126);
            dst.put_u16(n as u16);
        }
        n => {
            dst.put_u8(127);
            dst.put_u64(n as u64);
        }
    }
    dst.put_slice(payload);
}

/// Writes a server text frame.
pub fn write_text(text: &str, dst: &mut impl BufMut) {
    write_frame(OP_TEXT, text.as_bytes(), dst);
}

/// Writes a server close frame with `code` and `reason` (cut at a character boundary to fit a
/// control frame).
pub fn write_close(code: u16, reason: &str, dst: &mut impl BufMut) {
    let mut end = reason.len().min(MAX_CONTROL as usize - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.put_u16(code);
    payload.put_slice(&reason.as_bytes()[..end]);
    write_frame(OP_CLOSE, &payload, dst);
}

/// Writes the LB's own `101 Switching Protocols` for a client's `Sec-WebSocket-Key` (no
/// extension, no subprotocol).
pub fn write_accept(key: &[u8], dst: &mut impl BufMut) {
    dst.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    dst.put_slice(accept_key(key).as_bytes());
    dst.put_slice(b"\r\n\r\n");
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(key)
}

/// Reads a server close frame's code and reason (for tests and logs): `None` unless `frame`
/// is exactly one unmasked close frame.
pub fn read_close(frame: &[u8]) -> Option<(u16, String)> {
    let mut cursor = Cursor::new(frame);
    let (head, len) = FrameHeader::parse(&mut cursor).ok()??;
    if head.opcode != OpCode::Control(Control::Close) || head.mask.is_some() {
        return None;
    }
    let mut rest = &frame[cursor.position() as usize..];
    if rest.len() as u64 != len || rest.len() < 2 {
        return None;
    }
    let code = rest.get_u16();
    Some((code, String::from_utf8_lossy(rest).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN + `opcode`, masked with a fixed key.
    fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn text(s: &str) -> Vec<u8> {
        client(0x1, true, s.as_bytes())
    }

    #[test]
    fn the_first_message_with_a_stream_id_decides_and_earlier_ones_are_replayed() {
        let mut r = OpeningReader::new();
        let ice = text(r#"{"command":"getIceServerConfig"}"#);
        let play = text(r#"{"command":"play","streamId":"cam","token":""}"#);
        let mut input = BytesMut::new();
        input.extend_from_slice(&ice);
        // Half of the play message: nothing decided yet, the held message consumed.
        input.extend_from_slice(&play[..play.len() / 2]);
        assert_eq!(r.feed(&mut input).unwrap(), None);
        assert_eq!(&input[..], &play[..play.len() / 2]);
        input.extend_from_slice(&play[play.len() / 2..]);
        input.extend_from_slice(b"\x81"); // the start of the next frame stays
        assert_eq!(
            r.feed(&mut input).unwrap(),
            Some(Opening::Stream("cam".into()))
        );
        assert_eq!(&input[..], b"\x81");
        assert_eq!(&r.into_replay()[..], [ice, play].concat());
    }

    #[test]
    fn pings_are_answered_and_not_replayed() {
        let mut r = OpeningReader::new();
        let mut input = BytesMut::from(&text(r#"{"command":"ping"}"#)[..]);
        let Some(Opening::Answer(pong)) = r.feed(&mut input).unwrap() else {
            panic!("no answer");
        };
        // FIN + text, 18 bytes, unmasked.
        assert_eq!(&pong[..2], [0x81, 18]);
        assert_eq!(&pong[2..], br#"{"command":"pong"}"#);
        input.extend_from_slice(&client(0x9, true, b"hi"));
        assert_eq!(
            r.feed(&mut input).unwrap(),
            Some(Opening::Answer(vec![0x8A, 2, b'h', b'i']))
        );
        // A pong from the client is dropped.
        input.extend_from_slice(&client(0xA, true, b"x"));
        assert_eq!(r.feed(&mut input).unwrap(), None);
        assert!(input.is_empty() && r.into_replay().is_empty());
    }

    #[test]
    fn a_close_is_echoed() {
        let mut r = OpeningReader::new();
        let mut input = BytesMut::from(&client(0x8, true, b"\x03\xe8bye")[..]);
        assert_eq!(
            r.feed(&mut input).unwrap(),
            Some(Opening::Closed(vec![0x88, 2, 0x03, 0xe8]))
        );
    }

    #[test]
    fn refused_openings_name_their_close_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (text("hello"), close::POLICY),
            (text("[1,2]"), close::POLICY),
            (text(r#"{"streamId":"x"}"#), close::POLICY),
            (text(r#"{"command":"play","streamId":7}"#), close::POLICY),
            (text(r#"{"command":"play","streamId":""}"#), close::POLICY),
            (client(0x1, true, &[0xff, 0xfe]), close::INVALID_DATA),
            (client(0x2, true, b"\x01"), close::UNSUPPORTED),
            (client(0x1, false, b"{"), close::POLICY),
            (client(0x0, true, b"}"), close::POLICY),
            (client(0x3, true, b""), close::PROTOCOL),
            (client(0x9, true, &[0; 126]), close::PROTOCOL),
            (client(0x9, false, b""), close::PROTOCOL),
            (client(0x1 | 0x40, true, b"{}"), close::PROTOCOL),
            // Unmasked: FIN + text, length 2.
            (vec![0x81, 2, b'{', b'}'], close::PROTOCOL),
        ];
        for (frame, code) in cases {
            let mut input = BytesMut::from(&frame[..]);
            let e = OpeningReader::new().feed(&mut input).unwrap_err();
            assert_eq!(e.close_code(), code, "{e} for {frame:x?}");
        }
    }

    #[test]
    fn limits_apply_before_the_payload_arrives() {
        // A head announcing 1 MiB: refused from its 14 bytes.
        let mut head = vec![0x81, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        let e = OpeningReader::new()
            .feed(&mut BytesMut::from(&head[..]))
            .unwrap_err();
        assert!(matches!(e, OpeningError::TooBig(n) if n == 1 << 20), "{e}");
        assert_eq!(e.close_code(), close::TOO_BIG);

        let mut r = OpeningReader::new();
        let mut input = BytesMut::new();
        for _ in 0..MAX_HELD {
            input.extend_from_slice(&text(r#"{"command":"getIceServerConfig"}"#));
        }
        assert_eq!(r.feed(&mut input).unwrap(), None);
        input.extend_from_slice(&text(r#"{"command":"getIceServerConfig"}"#));
        assert!(matches!(r.feed(&mut input), Err(OpeningError::TooManyHeld)));

        let mut r = OpeningReader::new();
        let big = format!(r#"{{"command":"x","pad":"{}"}}"#, "y".repeat(40_000));
        let mut input = BytesMut::from(&[text(&big), text(&big)].concat()[..]);
        assert!(matches!(r.feed(&mut input), Err(OpeningError::TooManyHeld)));
    }

    #[test]
    fn server_frames() {
        let mut out = Vec::new();
        write_close(close::POLICY, &"é".repeat(100), &mut out);
        let (code, reason) = read_close(&out).unwrap();
        assert_eq!(code, 1008);
        assert_eq!(
            reason.len(),
            122,
            "cut at a character boundary under 123 bytes"
        );
        let mut out = Vec::new();
        write_text(&"a".repeat(300), &mut out);
        assert_eq!(&out[..4], [0x81, 126, 1, 44]);
        assert_eq!(out.len(), 304);
        // RFC 6455 section 1.3's example key.
        let mut out = Vec::new();
        write_accept(b"dGhlIHNhbXBsZSBub25jZQ==", &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        );
    }
}
