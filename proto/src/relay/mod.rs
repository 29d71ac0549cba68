//! The origin -> edge relay protocol (`streamfleet-relay/3`), sans-IO: message framing over QUIC
//! streams.
//!
//! Streams of one QUIC connection:
//! - the first bidirectional stream authenticates: each side sends [`Message::Auth`] with an
//!   HMAC of the cluster secret over the TLS exporter (channel binding);
//! - each later bidirectional stream is one subscription: the edge sends [`Message::Subscribe`],
//!   the origin answers [`Message::NotFound`] or describes every rendition with
//!   [`Message::Info`] (again whenever one changes) and [`Message::Stop`]s a rendition whose
//!   publisher left;
//! - every GOP of every rendition travels on its own unidirectional stream: a
//!   [`Message::GopHeader`] naming the subscription, then [`Message::Frame`]s. A late GOP can be
//!   dropped without stalling the next one. A frame that starts an HLS segment carries the
//!   origin's [`SegmentStart`] decision; when the publisher leaves, the [`Message::Stop`] goes
//!   on the GOP stream after its last frame (with the end of the segment it closes), so an edge
//!   ends the stream where the origin did.
//! - a rendition's first unit of a subscription starts (after its header) with copies of the
//!   origin's finished HLS segments still listed before it ([`Message::Segment`], oldest first),
//!   so a cold edge serves the origin's whole playlist window at once.
//!
//! Wire format of a message: type (u8), payload length (LEB128), payload. Integers in payloads
//! are LEB128; byte strings are a LEB128 length then the bytes; an optional value is a flag byte
//! (0 absent, 1 present) then the value.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::hls::SegmentStart;
use crate::names::RenditionId;
use crate::ts::TsMuxer;

/// ALPN of the relay. Version 2: renditions are named by their [`RenditionId`]; version 3: a
/// subscription starts with the origin's HLS window ([`Message::Segment`]).
pub const ALPN: &[u8] = b"streamfleet-relay/3";
/// Largest message (a frame of 4K video fits comfortably).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Longest app, stream or rendition name.
pub const MAX_NAME: usize = 256;
/// Most renditions of one stream.
pub const MAX_RENDITIONS: u8 = 32;
/// Length of an authentication MAC.
pub const MAC_LEN: usize = 32;

/// QUIC application close codes.
pub mod close {
    /// Normal close.
    pub const DONE: u32 = 0;
    /// The peer did not prove it knows the cluster secret.
    pub const AUTH_FAILED: u32 = 0x10;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 0x11;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 0x12;
    /// A unit's stream reset by the origin: frames of it were lost (the edge fell behind).
    pub const UNIT_CUT: u32 = 0x13;
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// AAC (FLV audio tag body).
    Audio,
    /// H.264 (FLV video tag body).
    Video,
}

/// One relay message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// HMAC-SHA256(secret, role || TLS exporter) proving knowledge of the cluster secret.
    Auth {
        /// The MAC.
        mac: [u8; MAC_LEN],
    },
    /// Edge -> origin: send me this stream and its renditions.
    Subscribe {
        /// Application.
        app: String,
        /// Stream id.
        stream: String,
    },
    /// Origin -> edge: no such live stream here.
    NotFound,
    /// Origin -> edge: a rendition's description (sent again when it changes).
    Info {
        /// Index of the rendition within the subscription (0 = source).
        rendition: u8,
        /// Which rendition of the stream it is (on the wire: its height, 0 for the source).
        id: RenditionId,
        /// Publish session of the origin hub (a change means a republish).
        generation: u64,
        /// FLV tag body of the AVC sequence header.
        video: Option<Bytes>,
        /// FLV tag body of the AAC sequence header.
        audio: Option<Bytes>,
        /// onMetaData AMF0 payload.
        metadata: Option<Bytes>,
    },
    /// Origin -> edge: the rendition's publisher left (on its GOP stream, after the last
    /// frame, or on the subscription's stream when no GOP was open).
    Stop {
        /// Rendition index.
        rendition: u8,
        /// Where the origin's packager ended the open HLS segment (output timeline, ms).
        segment_end: Option<u64>,
    },
    /// First message of a GOP stream.
    GopHeader {
        /// The subscription (the QUIC id of its bidirectional stream).
        subscription: u64,
        /// Rendition index.
        rendition: u8,
        /// Publish session the GOP belongs to.
        generation: u64,
        /// The GOP stream's place among the rendition's GOP streams of this subscription
        /// (0, 1, 2...): the edge puts them back in this order, whatever order they arrive in.
        sequence: u64,
    },
    /// A frame of a GOP stream.
    Frame {
        /// Track.
        kind: Kind,
        /// Decode timestamp, ms.
        dts: u64,
        /// Starts a GOP.
        keyframe: bool,
        /// Wall clock (unix µs) when the frame entered the origin's hub, for latency metrics.
        origin_us: u64,
        /// The HLS segment this frame starts, as the origin decided it.
        segment: Option<SegmentStart>,
        /// The frame starts an LL-HLS part (the origin decided it; a segment start always does).
        part: bool,
        /// FLV tag body.
        body: Bytes,
    },
    /// A finished HLS segment of the origin's playlist window (on a unit's stream, before its
    /// first frame): a cold edge lists it as the origin does, with the origin's bytes.
    Segment {
        /// Media sequence number.
        sequence: u64,
        /// Discontinuity sequence number up to and including it.
        discontinuity_sequence: u64,
        /// An `EXT-X-DISCONTINUITY` goes before it.
        discontinuity: bool,
        /// `EXT-X-PROGRAM-DATE-TIME`, unix ms.
        program_date_time: Option<i64>,
        /// Duration, ms.
        duration_ms: u64,
        /// The origin playlist's `EXT-X-TARGETDURATION`, seconds.
        target_duration: u32,
        /// The MPEG-TS bytes.
        data: Bytes,
    },
}

/// Relay protocol errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    /// A message type this version does not know.
    #[error("unknown relay message type {0}")]
    UnknownType(u8),
    /// A declared length beyond the limits.
    #[error("relay message of {0} bytes exceeds the limit")]
    TooLarge(u64),
    /// A payload shorter than its fields.
    #[error("truncated relay message")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("relay message has {0} trailing bytes")]
    Trailing(usize),
    /// A name that is too long or not UTF-8.
    #[error("invalid name in relay message")]
    BadName,
    /// A field with an impossible value.
    #[error("invalid relay message field: {0}")]
    BadField(&'static str),
}

mod ty {
    pub const AUTH: u8 = 1;
    pub const SUBSCRIBE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const INFO: u8 = 4;
    pub const STOP: u8 = 5;
    pub const GOP: u8 = 6;
    pub const FRAME: u8 = 7;
    pub const SEGMENT: u8 = 8;
}

fn put_varint(out: &mut impl BufMut, mut v: u64) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads a LEB128 value; `None` while incomplete.
fn get_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, RelayError> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if i == 9 && *b > 1 {
                return Err(RelayError::BadField("varint overflows u64"));
            }
            return Ok(Some((v, i + 1)));
        }
    }
    if buf.len() >= 10 {
        Err(RelayError::BadField("varint longer than 10 bytes"))
    } else {
        Ok(None)
    }
}

fn put_bytes(out: &mut impl BufMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

fn put_opt(out: &mut impl BufMut, b: &Option<Bytes>) {
    match b {
        None => out.put_u8(0),
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
    }
}

/// Signed values as LEB128: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn segment_len(s: &SegmentStart) -> usize {
    varint_len(s.sequence)
        + varint_len(s.discontinuity_sequence)
        + varint_len(zigzag(s.program_date_time))
        + varint_len(zigzag(s.timestamp_offset))
        + varint_len(u64::from(s.target_duration))
        + varint_len(u64::from(s.part_target_ms))
        + varint_len(u64::from(s.muxer.to_bits()))
}

/// A rendition on the wire: its height, 0 for the source.
fn height_of(id: RenditionId) -> u64 {
    match id {
        RenditionId::Source => 0,
        RenditionId::Height(h) => u64::from(h),
    }
}

fn bytes_len(b: &[u8]) -> usize {
    varint_len(b.len() as u64) + b.len()
}

fn opt_len(b: &Option<Bytes>) -> usize {
    1 + b.as_ref().map_or(0, |b| bytes_len(b))
}

impl Message {
    fn type_id(&self) -> u8 {
        match self {
            Message::Auth { .. } => ty::AUTH,
            Message::Subscribe { .. } => ty::SUBSCRIBE,
            Message::NotFound => ty::NOT_FOUND,
            Message::Info { .. } => ty::INFO,
            Message::Stop { .. } => ty::STOP,
            Message::GopHeader { .. } => ty::GOP,
            Message::Frame { .. } => ty::FRAME,
            Message::Segment { .. } => ty::SEGMENT,
        }
    }

    fn payload_len(&self) -> usize {
        match self {
            Message::Auth { .. } => MAC_LEN,
            Message::Subscribe { app, stream } => {
                bytes_len(app.as_bytes()) + bytes_len(stream.as_bytes())
            }
            Message::NotFound => 0,
            Message::Info {
                id,
                generation,
                video,
                audio,
                metadata,
                ..
            } => {
                1 + varint_len(height_of(*id))
                    + varint_len(*generation)
                    + opt_len(video)
                    + opt_len(audio)
                    + opt_len(metadata)
            }
            Message::Stop { segment_end, .. } => 2 + segment_end.map_or(0, varint_len),
            Message::GopHeader {
                subscription,
                generation,
                sequence,
                ..
            } => varint_len(*subscription) + 1 + varint_len(*generation) + varint_len(*sequence),
            Message::Frame {
                dts,
                origin_us,
                segment,
                body,
                ..
            } => {
                1 + varint_len(*dts)
                    + varint_len(*origin_us)
                    + segment.as_ref().map_or(0, segment_len)
                    + bytes_len(body)
            }
            Message::Segment {
                sequence,
                discontinuity_sequence,
                program_date_time,
                duration_ms,
                target_duration,
                data,
                ..
            } => {
                1 + varint_len(*sequence)
                    + varint_len(*discontinuity_sequence)
                    + program_date_time.map_or(0, |t| varint_len(zigzag(t)))
                    + varint_len(*duration_ms)
                    + varint_len(u64::from(*target_duration))
                    + bytes_len(data)
            }
        }
    }

    /// Appends the encoded message.
    pub fn encode(&self, out: &mut BytesMut) {
        let len = self.payload_len();
        out.reserve(1 + varint_len(len as u64) + len);
        out.put_u8(self.type_id());
        put_varint(out, len as u64);
        match self {
            Message::Auth { mac } => out.put_slice(mac),
            Message::Subscribe { app, stream } => {
                put_bytes(out, app.as_bytes());
                put_bytes(out, stream.as_bytes());
            }
            Message::NotFound => {}
            Message::Info {
                rendition,
                id,
                generation,
                video,
                audio,
                metadata,
            } => {
                out.put_u8(*rendition);
                put_varint(out, height_of(*id));
                put_varint(out, *generation);
                put_opt(out, video);
                put_opt(out, audio);
                put_opt(out, metadata);
            }
            Message::Stop {
                rendition,
                segment_end,
            } => {
                out.put_u8(*rendition);
                match segment_end {
                    None => out.put_u8(0),
                    Some(end) => {
                        out.put_u8(1);
                        put_varint(out, *end);
                    }
                }
            }
            Message::GopHeader {
                subscription,
                rendition,
                generation,
                sequence,
            } => {
                put_varint(out, *subscription);
                out.put_u8(*rendition);
                put_varint(out, *generation);
                put_varint(out, *sequence);
            }
            Message::Frame {
                kind,
                dts,
                keyframe,
                origin_us,
                segment,
                part,
                body,
            } => {
                let flags = u8::from(*kind == Kind::Video)
                    | (u8::from(*keyframe) << 1)
                    | (u8::from(segment.is_some()) << 2)
                    | (u8::from(segment.is_some_and(|s| s.discontinuity)) << 3)
                    | (u8::from(*part || segment.is_some()) << 4);
                out.put_u8(flags);
                put_varint(out, *dts);
                put_varint(out, *origin_us);
                if let Some(s) = segment {
                    put_varint(out, s.sequence);
                    put_varint(out, s.discontinuity_sequence);
                    put_varint(out, zigzag(s.program_date_time));
                    put_varint(out, zigzag(s.timestamp_offset));
                    put_varint(out, u64::from(s.target_duration));
                    put_varint(out, u64::from(s.part_target_ms));
                    put_varint(out, u64::from(s.muxer.to_bits()));
                }
                put_bytes(out, body);
            }
            Message::Segment {
                sequence,
                discontinuity_sequence,
                discontinuity,
                program_date_time,
                duration_ms,
                target_duration,
                data,
            } => {
                out.put_u8(u8::from(*discontinuity) | (u8::from(program_date_time.is_some()) << 1));
                put_varint(out, *sequence);
                put_varint(out, *discontinuity_sequence);
                if let Some(t) = program_date_time {
                    put_varint(out, zigzag(*t));
                }
                put_varint(out, *duration_ms);
                put_varint(out, u64::from(*target_duration));
                put_bytes(out, data);
            }
        }
    }

    /// Decodes one message from the front of `buf`, consuming it; `Ok(None)` while incomplete.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Message>, RelayError> {
        let Some(&type_id) = buf.first() else {
            return Ok(None);
        };
        if !(ty::AUTH..=ty::SEGMENT).contains(&type_id) {
            return Err(RelayError::UnknownType(type_id));
        }
        let Some((len, len_bytes)) = get_varint(&buf[1..])? else {
            return Ok(None);
        };
        if len > MAX_MESSAGE as u64 {
            return Err(RelayError::TooLarge(len));
        }
        let header = 1 + len_bytes;
        let total = header + len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(header);
        let payload = buf.split_to(len as usize).freeze();
        let mut r = Reader { buf: payload };
        let msg = r.message(type_id)?;
        if !r.buf.is_empty() {
            return Err(RelayError::Trailing(r.buf.len()));
        }
        Ok(Some(msg))
    }
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, RelayError> {
        if self.buf.is_empty() {
            return Err(RelayError::Truncated);
        }
        Ok(self.buf.get_u8())
    }

    fn varint(&mut self) -> Result<u64, RelayError> {
        let (v, n) = get_varint(&self.buf)?.ok_or(RelayError::Truncated)?;
        self.buf.advance(n);
        Ok(v)
    }

    fn bytes(&mut self, limit: usize) -> Result<Bytes, RelayError> {
        let len = self.varint()?;
        if len > limit as u64 {
            return Err(RelayError::TooLarge(len));
        }
        if (self.buf.len() as u64) < len {
            return Err(RelayError::Truncated);
        }
        Ok(self.buf.split_to(len as usize))
    }

    fn name(&mut self) -> Result<String, RelayError> {
        let b = self.bytes(MAX_NAME)?;
        String::from_utf8(b.to_vec()).map_err(|_| RelayError::BadName)
    }

    fn opt(&mut self) -> Result<Option<Bytes>, RelayError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes(MAX_MESSAGE)?)),
            _ => Err(RelayError::BadField("option flag")),
        }
    }

    fn rendition(&mut self) -> Result<u8, RelayError> {
        let r = self.u8()?;
        if r >= MAX_RENDITIONS {
            return Err(RelayError::BadField("rendition index"));
        }
        Ok(r)
    }

    fn message(&mut self, type_id: u8) -> Result<Message, RelayError> {
        Ok(match type_id {
            ty::AUTH => {
                if self.buf.len() < MAC_LEN {
                    return Err(RelayError::Truncated);
                }
                let mut mac = [0u8; MAC_LEN];
                self.buf.copy_to_slice(&mut mac);
                Message::Auth { mac }
            }
            ty::SUBSCRIBE => Message::Subscribe {
                app: self.name()?,
                stream: self.name()?,
            },
            ty::NOT_FOUND => Message::NotFound,
            ty::INFO => Message::Info {
                rendition: self.rendition()?,
                id: match self.varint()? {
                    0 => RenditionId::Source,
                    h => RenditionId::Height(
                        u32::try_from(h).map_err(|_| RelayError::BadField("rendition height"))?,
                    ),
                },
                generation: self.varint()?,
                video: self.opt()?,
                audio: self.opt()?,
                metadata: self.opt()?,
            },
            ty::STOP => Message::Stop {
                rendition: self.rendition()?,
                segment_end: match self.u8()? {
                    0 => None,
                    1 => Some(self.varint()?),
                    _ => return Err(RelayError::BadField("option flag")),
                },
            },
            ty::GOP => Message::GopHeader {
                subscription: self.varint()?,
                rendition: self.rendition()?,
                generation: self.varint()?,
                sequence: self.varint()?,
            },
            ty::FRAME => {
                let flags = self.u8()?;
                // Bit 3 (a discontinuity) only with bit 2 (a segment start); bit 4 (a part
                // start) with every segment start.
                if flags & !0b1_1111 != 0
                    || flags & 0b1100 == 0b1000
                    || flags & 0b1_0100 == 0b0_0100
                {
                    return Err(RelayError::BadField("frame flags"));
                }
                let (kind, keyframe) = (
                    if flags & 1 == 1 {
                        Kind::Video
                    } else {
                        Kind::Audio
                    },
                    flags & 2 == 2,
                );
                let dts = self.varint()?;
                let origin_us = self.varint()?;
                let segment = if flags & 4 == 4 {
                    Some(SegmentStart {
                        sequence: self.varint()?,
                        discontinuity_sequence: self.varint()?,
                        discontinuity: flags & 8 == 8,
                        program_date_time: unzigzag(self.varint()?),
                        timestamp_offset: unzigzag(self.varint()?),
                        target_duration: u32::try_from(self.varint()?)
                            .map_err(|_| RelayError::BadField("target duration"))?,
                        part_target_ms: u32::try_from(self.varint()?)
                            .map_err(|_| RelayError::BadField("part target"))?,
                        muxer: u32::try_from(self.varint()?)
                            .ok()
                            .and_then(TsMuxer::from_bits)
                            .ok_or(RelayError::BadField("muxer state"))?,
                    })
                } else {
                    None
                };
                Message::Frame {
                    kind,
                    dts,
                    keyframe,
                    origin_us,
                    segment,
                    part: flags & 0b1_0000 != 0,
                    body: self.bytes(MAX_MESSAGE)?,
                }
            }
            ty::SEGMENT => {
                let flags = self.u8()?;
                if flags & !0b11 != 0 {
                    return Err(RelayError::BadField("segment flags"));
                }
                Message::Segment {
                    discontinuity: flags & 1 == 1,
                    sequence: self.varint()?,
                    discontinuity_sequence: self.varint()?,
                    program_date_time: if flags & 2 == 2 {
                        Some(unzigzag(self.varint()?))
                    } else {
                        None
                    },
                    duration_ms: self.varint()?,
                    target_duration: u32::try_from(self.varint()?)
                        .map_err(|_| RelayError::BadField("target duration"))?,
                    data: self.bytes(MAX_MESSAGE)?,
                }
            }
            other => return Err(RelayError::UnknownType(other)),
        })
    }
}

#[cfg(test)]
mod tests;
