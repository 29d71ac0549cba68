//! FLV AUDIODATA bodies: sound format and parameters, and the AACAUDIODATA of AAC.
//!
//! Byte 0 holds the sound format (high nibble), rate (2 bits), sample size and channel flag. For
//! AAC (format 10) byte 1 is the AACPacketType: 0 carries the AudioSpecificConfig, 1 one raw
//! AAC frame. Other formats are reported as [`AudioBody::Other`] with their payload untouched.

use bytes::{BufMut, Bytes};

use super::{FlvError, nibble};

/// The sound format of an audio tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundFormat {
    /// 0: linear PCM, platform endian.
    PcmPlatform,
    /// 1: ADPCM.
    Adpcm,
    /// 2: MP3.
    Mp3,
    /// 3: linear PCM, little endian.
    PcmLittleEndian,
    /// 4, 5, 6: Nellymoser (16 kHz mono, 8 kHz mono, other).
    Nellymoser(u8),
    /// 7: G.711 A-law.
    G711ALaw,
    /// 8: G.711 mu-law.
    G711MuLaw,
    /// 10: AAC.
    Aac,
    /// 11: Speex.
    Speex,
    /// 14: MP3 8 kHz.
    Mp3At8k,
    /// 9 (reserved; Enhanced RTMP's ExHeader), 15 (device specific) and anything else.
    Other(u8),
}

impl SoundFormat {
    /// Decodes the 4-bit sound format.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::PcmPlatform,
            1 => Self::Adpcm,
            2 => Self::Mp3,
            3 => Self::PcmLittleEndian,
            4..=6 => Self::Nellymoser(code),
            7 => Self::G711ALaw,
            8 => Self::G711MuLaw,
            10 => Self::Aac,
            11 => Self::Speex,
            14 => Self::Mp3At8k,
            other => Self::Other(other),
        }
    }

    /// The numeric sound format.
    pub fn code(self) -> u8 {
        match self {
            Self::PcmPlatform => 0,
            Self::Adpcm => 1,
            Self::Mp3 => 2,
            Self::PcmLittleEndian => 3,
            Self::Nellymoser(code) | Self::Other(code) => code,
            Self::G711ALaw => 7,
            Self::G711MuLaw => 8,
            Self::Aac => 10,
            Self::Speex => 11,
            Self::Mp3At8k => 14,
        }
    }
}

/// An AACAUDIODATA packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AacPacket {
    /// 0: the AudioSpecificConfig (parse it with `aac::AudioSpecificConfig::parse`).
    SequenceHeader(Bytes),
    /// 1: one raw AAC frame.
    Raw(Bytes),
}

/// The payload of an audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioBody {
    /// An AAC packet.
    Aac(AacPacket),
    /// A format streamfleet does not process, with its payload untouched.
    Other {
        /// The sound format.
        format: SoundFormat,
        /// Everything after byte 0.
        data: Bytes,
    },
}

/// A parsed FLV audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTag {
    /// SoundRate: 0 = 5.5 kHz, 1 = 11 kHz, 2 = 22 kHz, 3 = 44 kHz (always 3 for AAC, whose real
    /// rate is in the AudioSpecificConfig).
    pub rate: u8,
    /// SoundSize: 16-bit samples rather than 8-bit.
    pub sample_size_16: bool,
    /// SoundType: stereo rather than mono.
    pub stereo: bool,
    /// The format-specific payload.
    pub body: AudioBody,
}

/// Bytes of an AAC tag header: flags, AACPacketType.
const AAC_HEADER_LEN: usize = 2;

impl AudioTag {
    /// Parses a complete audio tag body.
    pub fn parse(body: &Bytes) -> Result<Self, FlvError> {
        let first = *body.first().ok_or(FlvError::EmptyTag)?;
        let format = SoundFormat::from_code(first >> 4);
        let body = if format == SoundFormat::Aac {
            let packet_type = *body.get(1).ok_or(FlvError::Truncated {
                what: "AAC audio",
                needed: AAC_HEADER_LEN,
                have: body.len(),
            })?;
            let data = body.slice(AAC_HEADER_LEN..);
            AudioBody::Aac(match packet_type {
                0 => AacPacket::SequenceHeader(data),
                1 => AacPacket::Raw(data),
                other => return Err(FlvError::UnknownAacPacketType(other)),
            })
        } else {
            AudioBody::Other {
                format,
                data: body.slice(1..),
            }
        };
        Ok(Self {
            rate: (first >> 2) & 0x03,
            sample_size_16: first & 0x02 != 0,
            stereo: first & 0x01 != 0,
            body,
        })
    }

    /// An AAC tag with the flags the FLV specification fixes for AAC (44 kHz, 16-bit, stereo).
    pub fn aac(packet: AacPacket) -> Self {
        Self {
            rate: 3,
            sample_size_16: true,
            stereo: true,
            body: AudioBody::Aac(packet),
        }
    }

    /// Writes the tag body; fails, writing nothing, if a field does not fit.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), FlvError> {
        let format = match &self.body {
            AudioBody::Aac(_) => SoundFormat::Aac,
            AudioBody::Other { format, .. } => *format,
        };
        let flags = ((self.rate & 0x03) << 2)
            | (u8::from(self.sample_size_16) << 1)
            | u8::from(self.stereo);
        out.put_u8((nibble("sound format", format.code())? << 4) | flags);
        match &self.body {
            AudioBody::Aac(AacPacket::SequenceHeader(data)) => {
                out.put_u8(0);
                out.put_slice(data);
            }
            AudioBody::Aac(AacPacket::Raw(data)) => {
                out.put_u8(1);
                out.put_slice(data);
            }
            AudioBody::Other { data, .. } => out.put_slice(data),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<AudioTag, FlvError> {
        AudioTag::parse(&Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn parses_aac_sequence_header_and_frame() {
        let tag = parse(&[
            0xAF, // format 10 (AAC), rate 3, 16-bit, stereo
            0x00, // AACPacketType 0: sequence header
            0x12, 0x10, // AudioSpecificConfig: LC, 44.1 kHz, stereo
        ])
        .unwrap();
        assert_eq!((tag.rate, tag.sample_size_16, tag.stereo), (3, true, true));
        assert_eq!(
            tag.body,
            AudioBody::Aac(AacPacket::SequenceHeader(Bytes::from_static(&[0x12, 0x10])))
        );
        let tag = parse(&[0xAF, 0x01, 0x21, 0x1B]).unwrap(); // AACPacketType 1: raw frame
        assert_eq!(
            tag.body,
            AudioBody::Aac(AacPacket::Raw(Bytes::from_static(&[0x21, 0x1B])))
        );
    }

    #[test]
    fn other_formats_are_typed() {
        let tag = parse(&[0x2E, 0xFF, 0xFB]).unwrap(); // MP3, rate 3, 16-bit, mono
        assert_eq!(
            tag.body,
            AudioBody::Other {
                format: SoundFormat::Mp3,
                data: Bytes::from_static(&[0xFF, 0xFB])
            }
        );
        assert!(!tag.stereo);
        let tag = parse(&[0x92]).unwrap();
        assert!(matches!(
            tag.body,
            AudioBody::Other {
                format: SoundFormat::Other(9),
                ..
            }
        ));
    }

    #[test]
    fn rejects_malformed_tags() {
        assert!(matches!(parse(&[]), Err(FlvError::EmptyTag)));
        assert!(matches!(
            parse(&[0xAF]),
            Err(FlvError::Truncated {
                needed: 2,
                have: 1,
                ..
            })
        ));
        assert!(matches!(
            parse(&[0xAF, 0x02]),
            Err(FlvError::UnknownAacPacketType(2))
        ));
    }

    #[test]
    fn encodes_and_round_trips() {
        for tag in [
            AudioTag::aac(AacPacket::SequenceHeader(Bytes::from_static(&[0x12, 0x10]))),
            AudioTag::aac(AacPacket::Raw(Bytes::from_static(&[0x21, 0x1B, 0x00]))),
            AudioTag {
                rate: 1,
                sample_size_16: false,
                stereo: true,
                body: AudioBody::Other {
                    format: SoundFormat::Speex,
                    data: Bytes::from_static(&[7]),
                },
            },
        ] {
            let mut out = Vec::new();
            tag.encode(&mut out).unwrap();
            assert_eq!(parse(&out).unwrap(), tag);
        }
        let mut out = Vec::new();
        AudioTag::aac(AacPacket::Raw(Bytes::from_static(&[0x21])))
            .encode(&mut out)
            .unwrap();
        assert_eq!(out, [0xAF, 0x01, 0x21]);
        let bad = AudioTag {
            rate: 0,
            sample_size_16: false,
            stereo: false,
            body: AudioBody::Other {
                format: SoundFormat::Other(16),
                data: Bytes::new(),
            },
        };
        out.clear();
        assert!(bad.encode(&mut out).is_err());
        assert!(out.is_empty());
    }
}
