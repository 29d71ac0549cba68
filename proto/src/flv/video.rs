//! FLV VIDEODATA bodies: frame type, codec id and the AVCVIDEOPACKET of H.264.
//!
//! Byte 0 holds the frame type (high nibble) and codec id (low nibble). For AVC (codec 7) byte 1
//! is the AVCPacketType and bytes 2..5 the signed 24-bit composition time offset (PTS - DTS in
//! milliseconds), then the payload: the AVCDecoderConfigurationRecord for a sequence header,
//! length-prefixed NAL units otherwise. Enhanced RTMP tags (bit 7 of byte 0 set: HEVC, AV1, VP9
//! by FourCC) are reported as [`VideoBody::Enhanced`] without interpretation.

use bytes::{BufMut, Bytes};

use super::{FlvError, nibble};

/// What kind of frame a video tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// 1: a keyframe (for AVC, a seekable frame: IDR or recovery point).
    Key,
    /// 2: an inter frame.
    Inter,
    /// 3: a disposable inter frame (H.263 only).
    DisposableInter,
    /// 4: a generated keyframe (server use only).
    Generated,
    /// 5: a video info/command frame, not a picture.
    Command,
}

impl FrameType {
    /// Decodes the 3-bit field.
    fn from_code(code: u8) -> Result<Self, FlvError> {
        match code {
            1 => Ok(Self::Key),
            2 => Ok(Self::Inter),
            3 => Ok(Self::DisposableInter),
            4 => Ok(Self::Generated),
            5 => Ok(Self::Command),
            other => Err(FlvError::InvalidFrameType(other)),
        }
    }

    /// The numeric frame type.
    pub fn code(self) -> u8 {
        match self {
            Self::Key => 1,
            Self::Inter => 2,
            Self::DisposableInter => 3,
            Self::Generated => 4,
            Self::Command => 5,
        }
    }
}

/// The codec id of a classic (non-enhanced) video tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// 2: Sorenson H.263.
    SorensonH263,
    /// 3: Screen video.
    ScreenVideo,
    /// 4: On2 VP6.
    Vp6,
    /// 5: On2 VP6 with alpha channel.
    Vp6Alpha,
    /// 6: Screen video version 2.
    ScreenVideo2,
    /// 7: H.264 / AVC.
    Avc,
    /// Anything else (1 JPEG, 12 is a non-standard HEVC extension, ...).
    Other(u8),
}

impl VideoCodec {
    /// Decodes the 4-bit codec id.
    pub fn from_code(code: u8) -> Self {
        match code {
            2 => Self::SorensonH263,
            3 => Self::ScreenVideo,
            4 => Self::Vp6,
            5 => Self::Vp6Alpha,
            6 => Self::ScreenVideo2,
            7 => Self::Avc,
            other => Self::Other(other),
        }
    }

    /// The numeric codec id.
    pub fn code(self) -> u8 {
        match self {
            Self::SorensonH263 => 2,
            Self::ScreenVideo => 3,
            Self::Vp6 => 4,
            Self::Vp6Alpha => 5,
            Self::ScreenVideo2 => 6,
            Self::Avc => 7,
            Self::Other(code) => code,
        }
    }
}

/// An AVCVIDEOPACKET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvcPacket {
    /// 0: the AVCDecoderConfigurationRecord (parse it with `avc::DecoderConfig::parse`).
    SequenceHeader(Bytes),
    /// 1: one access unit of length-prefixed NAL units.
    Nalu {
        /// PTS minus DTS in milliseconds (signed 24-bit on the wire).
        composition_time: i32,
        /// The length-prefixed NAL units.
        data: Bytes,
    },
    /// 2: end of sequence; no payload.
    EndOfSequence,
}

/// The payload of a video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoBody {
    /// An H.264 packet.
    Avc(AvcPacket),
    /// A command frame (frame type 5): 0 = start of client-side seeking, 1 = end.
    Command {
        /// The codec id the tag named.
        codec: VideoCodec,
        /// The command byte (0 when the tag carries none).
        command: u8,
    },
    /// A codec streamfleet does not process, with its payload untouched.
    Other {
        /// The codec id.
        codec: VideoCodec,
        /// Everything after byte 0.
        data: Bytes,
    },
    /// An Enhanced RTMP tag (ExVideoTagHeader): HEVC, AV1, VP9... by FourCC.
    Enhanced {
        /// The 4-bit VideoPacketType.
        packet_type: u8,
        /// The codec FourCC, e.g. `*b"hvc1"`.
        fourcc: [u8; 4],
        /// Everything after the FourCC.
        data: Bytes,
    },
}

/// A parsed FLV video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTag {
    /// Key, inter, command, ...
    pub frame_type: FrameType,
    /// The codec-specific payload.
    pub body: VideoBody,
}

/// Bytes of an AVC tag header: flags, AVCPacketType, composition time.
const AVC_HEADER_LEN: usize = 5;
/// Bytes of an enhanced tag header: flags, FourCC.
const ENHANCED_HEADER_LEN: usize = 5;
/// Range of a signed 24-bit composition time.
const CTS_RANGE: std::ops::RangeInclusive<i32> = -(1 << 23)..=(1 << 23) - 1;

impl VideoTag {
    /// Parses a complete video tag body.
    pub fn parse(body: &Bytes) -> Result<Self, FlvError> {
        let first = *body.first().ok_or(FlvError::EmptyTag)?;
        if first & 0x80 != 0 {
            let frame_type = FrameType::from_code((first >> 4) & 0x07)?;
            let fourcc: [u8; 4] = body
                .get(1..ENHANCED_HEADER_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or(FlvError::Truncated {
                    what: "enhanced video",
                    needed: ENHANCED_HEADER_LEN,
                    have: body.len(),
                })?;
            let body = VideoBody::Enhanced {
                packet_type: first & 0x0F,
                fourcc,
                data: body.slice(ENHANCED_HEADER_LEN..),
            };
            return Ok(Self { frame_type, body });
        }
        let frame_type = FrameType::from_code(first >> 4)?;
        let codec = VideoCodec::from_code(first & 0x0F);
        if frame_type == FrameType::Command {
            let command = body.get(1).copied().unwrap_or(0);
            return Ok(Self {
                frame_type,
                body: VideoBody::Command { codec, command },
            });
        }
        if codec != VideoCodec::Avc {
            return Ok(Self {
                frame_type,
                body: VideoBody::Other {
                    codec,
                    data: body.slice(1..),
                },
            });
        }
        let &[_, packet_type, c0, c1, c2, ..] = body.as_ref() else {
            return Err(FlvError::Truncated {
                what: "AVC video",
                needed: AVC_HEADER_LEN,
                have: body.len(),
            });
        };
        // Sign-extend the 24-bit value through the top byte of an i32.
        let composition_time = i32::from_be_bytes([c0, c1, c2, 0]) >> 8;
        let packet = match packet_type {
            0 => AvcPacket::SequenceHeader(body.slice(AVC_HEADER_LEN..)),
            1 => AvcPacket::Nalu {
                composition_time,
                data: body.slice(AVC_HEADER_LEN..),
            },
            2 => AvcPacket::EndOfSequence,
            other => return Err(FlvError::UnknownAvcPacketType(other)),
        };
        Ok(Self {
            frame_type,
            body: VideoBody::Avc(packet),
        })
    }

    /// An AVC sequence header tag for `record` (an encoded decoder configuration).
    pub fn avc_sequence_header(record: Bytes) -> Self {
        Self {
            frame_type: FrameType::Key,
            body: VideoBody::Avc(AvcPacket::SequenceHeader(record)),
        }
    }

    /// An AVC frame tag; `data` holds length-prefixed NAL units.
    pub fn avc_frame(keyframe: bool, composition_time: i32, data: Bytes) -> Self {
        Self {
            frame_type: if keyframe {
                FrameType::Key
            } else {
                FrameType::Inter
            },
            body: VideoBody::Avc(AvcPacket::Nalu {
                composition_time,
                data,
            }),
        }
    }

    /// True for keyframes (the frames a new viewer can start on).
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == FrameType::Key
    }

    /// Writes the tag body; fails, writing nothing, if a field does not fit.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), FlvError> {
        let frame_type = self.frame_type.code();
        match &self.body {
            VideoBody::Avc(packet) => {
                let (packet_type, composition_time, data) = match packet {
                    AvcPacket::SequenceHeader(data) => (0, 0, &data[..]),
                    AvcPacket::Nalu {
                        composition_time,
                        data,
                    } => (1, *composition_time, &data[..]),
                    AvcPacket::EndOfSequence => (2, 0, &[][..]),
                };
                if !CTS_RANGE.contains(&composition_time) {
                    return Err(FlvError::CompositionTimeOutOfRange(composition_time));
                }
                out.put_u8((frame_type << 4) | VideoCodec::Avc.code());
                out.put_u8(packet_type);
                // The low three bytes of the two's complement value are the 24-bit field.
                out.put_slice(&composition_time.to_be_bytes()[1..]);
                out.put_slice(data);
            }
            VideoBody::Command { codec, command } => {
                out.put_u8((frame_type << 4) | nibble("codec id", codec.code())?);
                out.put_u8(*command);
            }
            VideoBody::Other { codec, data } => {
                out.put_u8((frame_type << 4) | nibble("codec id", codec.code())?);
                out.put_slice(data);
            }
            VideoBody::Enhanced {
                packet_type,
                fourcc,
                data,
            } => {
                out.put_u8(0x80 | (frame_type << 4) | nibble("video packet type", *packet_type)?);
                out.put_slice(fourcc);
                out.put_slice(data);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<VideoTag, FlvError> {
        VideoTag::parse(&Bytes::copy_from_slice(bytes))
    }

    fn round_trip(tag: &VideoTag) -> Vec<u8> {
        let mut out = Vec::new();
        tag.encode(&mut out).unwrap();
        assert_eq!(&parse(&out).unwrap(), tag);
        out
    }

    #[test]
    fn parses_avc_sequence_header() {
        let tag = parse(&[
            0x17, // frame type 1 (key), codec 7 (AVC)
            0x00, // AVCPacketType 0: sequence header
            0x00, 0x00, 0x00, // composition time 0
            0x01, 0x64, 0x00, 0x1F, // start of an AVCDecoderConfigurationRecord
        ])
        .unwrap();
        assert_eq!(tag.frame_type, FrameType::Key);
        assert_eq!(
            tag.body,
            VideoBody::Avc(AvcPacket::SequenceHeader(Bytes::from_static(&[
                1, 0x64, 0, 0x1F
            ])))
        );
    }

    #[test]
    fn parses_nalu_with_signed_composition_time() {
        let tag = parse(&[
            0x27, // frame type 2 (inter), codec 7
            0x01, // AVCPacketType 1: NALU
            0xFF, 0xFF, 0xDE, // composition time -34 ms
            0x00, 0x00, 0x00, 0x01, 0x41, // one length-prefixed NAL
        ])
        .unwrap();
        assert!(!tag.is_keyframe());
        let VideoBody::Avc(AvcPacket::Nalu {
            composition_time,
            data,
        }) = tag.body
        else {
            panic!("not a NALU packet: {tag:?}");
        };
        assert_eq!(composition_time, -34);
        assert_eq!(&data[..], &[0, 0, 0, 1, 0x41]);
        let tag = parse(&[0x17, 0x01, 0x00, 0x00, 0x42]).unwrap();
        assert!(matches!(
            tag.body,
            VideoBody::Avc(AvcPacket::Nalu {
                composition_time: 66,
                ..
            })
        ));
    }

    #[test]
    fn parses_end_of_sequence_and_command() {
        let tag = parse(&[0x17, 0x02, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(tag.body, VideoBody::Avc(AvcPacket::EndOfSequence));
        let tag = parse(&[0x57, 0x01]).unwrap();
        assert_eq!(tag.frame_type, FrameType::Command);
        assert_eq!(
            tag.body,
            VideoBody::Command {
                codec: VideoCodec::Avc,
                command: 1
            }
        );
    }

    #[test]
    fn other_codecs_are_typed_not_errors() {
        let tag = parse(&[0x12, 0xAA, 0xBB]).unwrap(); // key frame, Sorenson H.263
        assert_eq!(
            tag.body,
            VideoBody::Other {
                codec: VideoCodec::SorensonH263,
                data: Bytes::from_static(&[0xAA, 0xBB])
            }
        );
        let tag = parse(&[0x1C, 0x00]).unwrap(); // codec 12 (non-standard HEVC)
        assert!(matches!(
            tag.body,
            VideoBody::Other {
                codec: VideoCodec::Other(12),
                ..
            }
        ));
        // Enhanced RTMP: IsExHeader, frame type 1, PacketTypeSequenceStart, FourCC "hvc1".
        let tag = parse(&[0x90, b'h', b'v', b'c', b'1', 0x01]).unwrap();
        assert_eq!(
            tag.body,
            VideoBody::Enhanced {
                packet_type: 0,
                fourcc: *b"hvc1",
                data: Bytes::from_static(&[1])
            }
        );
    }

    #[test]
    fn rejects_malformed_tags() {
        assert!(matches!(parse(&[]), Err(FlvError::EmptyTag)));
        assert!(matches!(
            parse(&[0x17, 0x01, 0x00]),
            Err(FlvError::Truncated { have: 3, .. })
        ));
        assert!(matches!(
            parse(&[0x07, 0x01]),
            Err(FlvError::InvalidFrameType(0))
        ));
        assert!(matches!(
            parse(&[0x67, 0x01]),
            Err(FlvError::InvalidFrameType(6))
        ));
        assert!(matches!(
            parse(&[0x17, 0x03, 0, 0, 0]),
            Err(FlvError::UnknownAvcPacketType(3))
        ));
        assert!(matches!(
            parse(&[0x90, b'h', b'v']),
            Err(FlvError::Truncated { .. })
        ));
    }

    #[test]
    fn encodes_and_round_trips() {
        let out = round_trip(&VideoTag::avc_frame(
            true,
            -34,
            Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        ));
        assert_eq!(&out[..5], &[0x17, 0x01, 0xFF, 0xFF, 0xDE]);
        round_trip(&VideoTag::avc_sequence_header(Bytes::from_static(&[
            1, 0x64, 0, 0x1F,
        ])));
        round_trip(&VideoTag {
            frame_type: FrameType::Key,
            body: VideoBody::Avc(AvcPacket::EndOfSequence),
        });
        round_trip(&VideoTag::avc_frame(false, (1 << 23) - 1, Bytes::new()));
        round_trip(&VideoTag::avc_frame(false, -(1 << 23), Bytes::new()));
        round_trip(&VideoTag {
            frame_type: FrameType::Inter,
            body: VideoBody::Enhanced {
                packet_type: 1,
                fourcc: *b"av01",
                data: Bytes::from_static(&[9]),
            },
        });
    }

    #[test]
    fn encode_rejects_unrepresentable_fields() {
        let mut out = Vec::new();
        let tag = VideoTag::avc_frame(false, 1 << 23, Bytes::new());
        assert!(matches!(
            tag.encode(&mut out),
            Err(FlvError::CompositionTimeOutOfRange(_))
        ));
        let tag = VideoTag {
            frame_type: FrameType::Key,
            body: VideoBody::Other {
                codec: VideoCodec::Other(16),
                data: Bytes::new(),
            },
        };
        assert!(matches!(
            tag.encode(&mut out),
            Err(FlvError::FieldOutOfRange { value: 16, .. })
        ));
        assert!(out.is_empty());
    }
}
