//! RTMP sessions: the whole server side ([`ServerSession`]) and client side ([`ClientSession`])
//! of one connection, sans-IO.
//!
//! The IO layer feeds socket bytes to `handle_input`, takes events with `poll_event`, answers the
//! ones that need an answer (the server's `accept_*` / `reject_*`), and writes whatever
//! `take_output` / `poll_output` hands back. Inside, bytes go handshake -> chunk decoder ->
//! typed [`Message`]s -> command handling; answers go through one chunk encoder into one output
//! buffer, so their order on the wire is the order they were produced in.

mod client;
mod server;

#[cfg(test)]
mod pair_tests;

pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use server::{PublishKind, ServerConfig, ServerEvent, ServerSession};

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::amf0::Amf0Value;
use super::chunk::{ChunkEncoder, ChunkError, ChunkedBody};
use super::handshake::HandshakeError;
use super::message::{Command, Message, MessageError};

/// Chunk stream for protocol control and user control messages (required by the spec).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for commands on the NetConnection (stream 0).
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for audio sent by the session.
pub const CSID_AUDIO: u32 = 4;
/// Chunk stream for stream commands (onStatus) and data messages (metadata).
pub const CSID_STREAM: u32 = 5;
/// Chunk stream for video sent by the session.
pub const CSID_VIDEO: u32 = 6;

/// Errors of a session (server or client).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The handshake failed.
    #[error("handshake failed")]
    Handshake(#[source] HandshakeError),
    /// The chunk stream was malformed or exceeded a limit.
    #[error("chunk stream error")]
    Chunk(#[source] ChunkError),
    /// A message body was malformed.
    #[error("malformed message")]
    Message(#[source] MessageError),
    /// The peer sent `connect` twice.
    #[error("second connect on the same connection")]
    DuplicateConnect,
    /// A command that needs an accepted `connect` came before it.
    #[error("command {0:?} before the connection was accepted")]
    NotConnected(String),
    /// A command or call named a message stream that does not exist (or is in the wrong state).
    #[error("no usable message stream {0}")]
    UnknownStream(u32),
    /// An answer (`accept_*` / `reject_*`) was given with no matching question pending.
    #[error("no pending {0} request to answer")]
    NoPendingRequest(&'static str),
    /// Media was sent on a stream that is not playing (server) or publishing (client).
    #[error("stream {0} is not in a state to send media")]
    StreamNotActive(u32),
    /// The peer kept sending while an answer was pending, beyond the buffer limit.
    #[error("more than {0} bytes of input buffered while waiting for an answer")]
    InputOverflow(usize),
    /// The recording of post-handshake input (for the load balancer) exceeded its limit.
    #[error("more than {0} bytes of input recorded for replay")]
    RecordingOverflow(usize),
    /// The client was asked to do something before the server accepted its connect.
    #[error("the connection is not established yet")]
    NotReady,
}

impl From<HandshakeError> for SessionError {
    fn from(e: HandshakeError) -> Self {
        SessionError::Handshake(e)
    }
}

impl From<ChunkError> for SessionError {
    fn from(e: ChunkError) -> Self {
        SessionError::Chunk(e)
    }
}

impl From<MessageError> for SessionError {
    fn from(e: MessageError) -> Self {
        SessionError::Message(e)
    }
}

/// The session's outgoing side: one chunk encoder and the bytes it produced.
///
/// Output is a chain: `queue` (frozen pieces, shared chunked bodies among them), then `buf`.
/// Whatever is written into `buf` goes on the wire after every piece in `queue`.
#[derive(Debug, Default)]
struct Outbox {
    /// Header compression state towards the peer.
    encoder: ChunkEncoder,
    /// Pieces waiting for the IO layer, in wire order, before `buf`.
    queue: VecDeque<Bytes>,
    /// Bytes waiting for the IO layer, after `queue`.
    buf: BytesMut,
}

impl Outbox {
    /// Encodes one message.
    fn send(
        &mut self,
        csid: u32,
        timestamp: u32,
        stream_id: u32,
        message: &Message,
    ) -> Result<(), SessionError> {
        let raw = message.to_raw(csid, timestamp, stream_id);
        self.encoder.write(&raw, &mut self.buf)?;
        Ok(())
    }

    /// Encodes a media or data body as it is.
    fn send_body(
        &mut self,
        csid: u32,
        type_id: u8,
        timestamp: u32,
        stream_id: u32,
        payload: &Bytes,
    ) -> Result<(), SessionError> {
        let raw = super::chunk::RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: payload.clone(),
        };
        self.encoder.write(&raw, &mut self.buf)?;
        Ok(())
    }

    /// Encodes a media body already cut into chunks: this connection's header goes into `buf`,
    /// the shared chunks are queued after it without a copy (or copied in when they do not fit
    /// this connection, see [`ChunkEncoder::write_chunked`]).
    fn send_chunked(
        &mut self,
        type_id: u8,
        timestamp: u32,
        stream_id: u32,
        body: &ChunkedBody,
    ) -> Result<(), SessionError> {
        let shared =
            self.encoder
                .write_chunked(timestamp, type_id, stream_id, body, &mut self.buf)?;
        if let Some(wire) = shared.filter(|w| !w.is_empty()) {
            self.queue.push_back(self.buf.split().freeze());
            self.queue.push_back(wire);
        }
        Ok(())
    }

    /// Bytes waiting in all.
    fn len(&self) -> usize {
        self.queue.iter().map(Bytes::len).sum::<usize>() + self.buf.len()
    }

    /// Appends every waiting byte to `dst` (a copy) and empties the outbox.
    fn copy_to(&mut self, dst: &mut BytesMut) {
        for piece in self.queue.drain(..) {
            dst.extend_from_slice(&piece);
        }
        dst.extend_from_slice(&self.buf);
        self.buf.clear();
    }

    /// Encodes a command: on csid 3 for stream 0, on csid 5 for other streams.
    fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<(), SessionError> {
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_STREAM
        };
        let command = Command {
            name: name.to_owned(),
            transaction_id,
            command_object,
            args,
        };
        self.send(csid, 0, stream_id, &Message::Command(command))
    }

    /// Moves the next waiting piece out, in wire order.
    fn take(&mut self) -> Option<Bytes> {
        if let Some(piece) = self.queue.pop_front() {
            return Some(piece);
        }
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// Acknowledgement bookkeeping: the peer's window and the bytes received so far.
#[derive(Debug, Default)]
struct AckCounter {
    /// Window announced by the peer (Window Acknowledgement Size); `None` = never asked.
    window: Option<u32>,
    /// Bytes received on the connection, handshake included.
    received: u64,
    /// `received` when the last Acknowledgement was sent.
    acked: u64,
}

impl AckCounter {
    /// Sends an Acknowledgement if the peer's window has been reached.
    fn maybe_ack(&mut self, out: &mut Outbox) -> Result<(), SessionError> {
        let Some(window) = self.window.filter(|&w| w > 0) else {
            return Ok(());
        };
        if self.received - self.acked >= u64::from(window) {
            self.acked = self.received;
            // The sequence number wraps at 2^32 by definition.
            let sequence = (self.received & u64::from(u32::MAX)) as u32;
            out.send(CSID_CONTROL, 0, 0, &Message::Acknowledgement { sequence })?;
        }
        Ok(())
    }
}

/// A `{level, code, description}` status object as FMS and nginx-rtmp send it.
fn status(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", Amf0Value::string(level)),
        ("code", Amf0Value::string(code)),
        ("description", Amf0Value::string(description)),
    ])
}

/// The string at `index` in a list of AMF0 values, if it is one.
fn arg_str(args: &[Amf0Value], index: usize) -> Option<&str> {
    args.get(index).and_then(Amf0Value::as_str)
}

/// The number at `index` in a list of AMF0 values, if it is one.
fn arg_f64(args: &[Amf0Value], index: usize) -> Option<f64> {
    args.get(index).and_then(Amf0Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkDecoder;

    #[test]
    fn acknowledgement_is_sent_when_the_window_is_reached() {
        let mut acks = AckCounter::default();
        let mut out = Outbox::default();
        acks.received = 5_000;
        acks.maybe_ack(&mut out).unwrap();
        assert!(
            out.buf.is_empty(),
            "no window announced: no acknowledgement"
        );
        acks.window = Some(1_000);
        acks.received = 999;
        acks.maybe_ack(&mut out).unwrap();
        assert!(out.buf.is_empty());
        acks.received = 1_500;
        acks.maybe_ack(&mut out).unwrap();
        acks.received = 2_000; // only 500 since the last one
        acks.maybe_ack(&mut out).unwrap();
        let mut wire = out.buf.split();
        let raw = ChunkDecoder::default().decode(&mut wire).unwrap().unwrap();
        assert!(wire.is_empty(), "exactly one acknowledgement");
        assert_eq!(
            Message::from_raw(&raw).unwrap(),
            Message::Acknowledgement { sequence: 1_500 }
        );
    }
}
