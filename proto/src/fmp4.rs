//! fMP4 (CMAF) for Low-Latency HLS: the initialization segment of a program of up to one H.264
//! and one AAC track ([`init_segment`]), and the fragments (`moof` + `mdat`) that carry their
//! samples ([`fragment`]), one per LL-HLS part. The boxes come from the `mp4-atom` crate; this
//! module only decides what goes in them. The output depends on nothing but the arguments, so
//! every node that packages the same samples with the same numbers writes the same bytes.
//!
//! Timescales: video 90 kHz, audio its sample rate. Video samples are the FLV frame bodies'
//! length-prefixed NAL units (the `avcC` is the publisher's own record, so the length size
//! matches); audio samples are raw AAC frames.

use mp4_atom::esds::{DecoderConfig as EsdsConfig, DecoderSpecific, EsDescriptor};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec, Dinf, Dref, Encode, Esds, Ftyp, Hdlr, Header, Mdat, Mdhd, Mdia,
    Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak,
    Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

/// Track id of the video track.
pub const VIDEO_TRACK: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK: u32 = 2;
/// Video timescale (ticks per second).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples per AAC frame.
pub const AAC_FRAME_SAMPLES: u32 = 1024;
/// `sample_flags` of a sync sample (depends on nothing).
const SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a sample that depends on others.
const NON_SYNC: u32 = 0x0101_0000;

/// What went wrong writing fMP4.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// The box library refused what it was given.
    #[error("fMP4 box")]
    Box(#[from] mp4_atom::Error),
    /// A fragment larger than a 32-bit data offset can address.
    #[error("fragment too large")]
    TooLarge,
}

/// The video track of an initialization segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoInit<'a> {
    /// AVCDecoderConfigurationRecord, as the publisher sent it.
    pub record: &'a [u8],
    /// Pixels.
    pub width: u16,
    /// Pixels.
    pub height: u16,
}

/// The audio track of an initialization segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInit<'a> {
    /// AudioSpecificConfig, as the publisher sent it.
    pub asc: &'a [u8],
    /// Hz (the track's timescale).
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
}

/// `ftyp` + `moov` for the tracks given (at least one).
pub fn init_segment(
    video: Option<&VideoInit<'_>>,
    audio: Option<&AudioInit<'_>>,
) -> Result<Vec<u8>, Fmp4Error> {
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let dinf = Dinf {
        dref: Dref {
            entries: vec![Url::default().into()],
        },
    };
    let stbl = |codec: Codec| Stbl {
        stsd: Stsd {
            codecs: vec![codec],
        },
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let mut traks = Vec::new();
    if let Some(v) = video {
        let avc1 = Avc1 {
            visual: Visual {
                data_reference_index: 1,
                width: v.width,
                height: v.height,
                ..Default::default()
            },
            avcc: Avcc::decode_body(&mut &v.record[..])?,
            ..Default::default()
        };
        traks.push(Trak {
            tkhd: Tkhd {
                track_id: VIDEO_TRACK,
                enabled: true,
                in_movie: true,
                width: v.width.into(),
                height: v.height.into(),
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale: VIDEO_TIMESCALE,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr: Hdlr {
                    handler: b"vide".into(),
                    name: "VideoHandler".into(),
                },
                minf: Minf {
                    vmhd: Some(Vmhd::default()),
                    dinf: dinf.clone(),
                    stbl: stbl(avc1.into()),
                    ..Default::default()
                },
            },
            ..Default::default()
        });
    }
    if let Some(a) = audio {
        let mp4a = Mp4a {
            audio: Audio {
                data_reference_index: 1,
                channel_count: a.channels,
                sample_size: 16,
                sample_rate: u16::try_from(a.sample_rate).unwrap_or(u16::MAX).into(),
            },
            esds: Esds {
                es_desc: EsDescriptor {
                    es_id: AUDIO_TRACK as u16,
                    dec_config: EsdsConfig {
                        object_type_indication: 0x40,
                        stream_type: 0x05,
                        up_stream: 0,
                        buffer_size_db: Default::default(),
                        max_bitrate: 0,
                        avg_bitrate: 0,
                        dec_specific: Some(DecoderSpecific {
                            raw: a.asc.to_vec(),
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                },
            },
            btrt: None,
            taic: None,
        };
        traks.push(Trak {
            tkhd: Tkhd {
                track_id: AUDIO_TRACK,
                enabled: true,
                in_movie: true,
                alternate_group: 1,
                volume: 1.into(),
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale: a.sample_rate,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr: Hdlr {
                    handler: b"soun".into(),
                    name: "SoundHandler".into(),
                },
                minf: Minf {
                    smhd: Some(Smhd::default()),
                    dinf: dinf.clone(),
                    stbl: stbl(mp4a.into()),
                    ..Default::default()
                },
            },
            ..Default::default()
        });
    }
    let trex = traks
        .iter()
        .map(|t| Trex {
            track_id: t.tkhd.track_id,
            default_sample_description_index: 1,
            ..Default::default()
        })
        .collect();
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: AUDIO_TRACK + 1,
            ..Default::default()
        },
        trak: traks,
        mvex: Some(Mvex { mehd: None, trex }),
        ..Default::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out)
}

/// One sample of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Bytes.
    pub size: u32,
    /// A sync sample (keyframe; every audio frame).
    pub sync: bool,
    /// Presentation minus decode time, in the track's timescale.
    pub composition_offset: i32,
}

/// The samples of one track in a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<'a> {
    /// [`VIDEO_TRACK`] or [`AUDIO_TRACK`].
    pub track: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: Vec<Sample>,
    /// Their bytes, one after the other.
    pub data: Vec<&'a [u8]>,
}

/// `moof` + `mdat` for `runs` (tracks with samples), `sequence` its `mfhd` number.
pub fn fragment(sequence: u32, runs: &[Run<'_>]) -> Result<Vec<u8>, Fmp4Error> {
    let build = |offsets: &[i32]| Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: runs
            .iter()
            .zip(offsets)
            .map(|(r, &data_offset)| Traf {
                tfhd: Tfhd {
                    track_id: r.track,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: r.base_decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(data_offset),
                    samples: r
                        .samples
                        .iter()
                        .map(|s| TrunEntry {
                            duration: Some(s.duration),
                            size: Some(s.size),
                            flags: Some(if s.sync { SYNC } else { NON_SYNC }),
                            cts: (r.track == VIDEO_TRACK)
                                .then_some(i64::from(s.composition_offset)),
                        })
                        .collect::<Vec<_>>()
                        .into(),
                }],
                ..Default::default()
            })
            .collect(),
    };
    // The data offsets are fixed-size fields: measure the moof once, then write it with them.
    let mut probe = Vec::new();
    build(&vec![0; runs.len()]).encode(&mut probe)?;
    let mut offset = probe.len() as u64 + 8;
    let mut offsets = Vec::with_capacity(runs.len());
    let mut payload = 0usize;
    for r in runs {
        offsets.push(i32::try_from(offset).map_err(|_| Fmp4Error::TooLarge)?);
        let bytes: usize = r.data.iter().map(|d| d.len()).sum();
        offset += bytes as u64;
        payload += bytes;
    }
    let mut out = Vec::with_capacity(probe.len() + 8 + payload);
    build(&offsets).encode(&mut out)?;
    Header {
        kind: Mdat::KIND,
        size: Some(payload),
    }
    .encode(&mut out)?;
    for r in runs {
        for d in &r.data {
            out.extend_from_slice(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::DecoderConfig;
    use crate::avc::fixtures::{PPS_X264, SPS_640X360};
    use bytes::{Bytes, BytesMut};
    use mp4_atom::DecodeMaybe;

    fn record() -> Vec<u8> {
        let config = DecoderConfig::from_parameter_sets(
            Bytes::from_static(SPS_640X360),
            Bytes::from_static(PPS_X264),
        )
        .unwrap();
        let mut out = BytesMut::new();
        config.encode(&mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn init_and_fragments_decode_back() {
        let rec = record();
        let init = init_segment(
            Some(&VideoInit {
                record: &rec,
                width: 640,
                height: 360,
            }),
            Some(&AudioInit {
                asc: &[0x12, 0x10],
                sample_rate: 44_100,
                channels: 2,
            }),
        )
        .unwrap();
        let mut buf = &init[..];
        assert!(matches!(
            mp4_atom::Any::decode_maybe(&mut buf).unwrap(),
            Some(mp4_atom::Any::Ftyp(_))
        ));
        let Some(mp4_atom::Any::Moov(moov)) = mp4_atom::Any::decode_maybe(&mut buf).unwrap() else {
            panic!("moov")
        };
        assert_eq!(moov.trak.len(), 2);
        assert_eq!(moov.mvex.unwrap().trex.len(), 2);

        let (v, a) = ([0u8, 0, 0, 2, 0x65, 1], [0x21u8, 0x10, 5]);
        let frag = fragment(
            7,
            &[
                Run {
                    track: VIDEO_TRACK,
                    base_decode_time: 90_000,
                    samples: vec![Sample {
                        duration: 3000,
                        size: 6,
                        sync: true,
                        composition_offset: 3000,
                    }],
                    data: vec![&v],
                },
                Run {
                    track: AUDIO_TRACK,
                    base_decode_time: 44_100,
                    samples: vec![Sample {
                        duration: 1024,
                        size: 3,
                        sync: true,
                        composition_offset: 0,
                    }],
                    data: vec![&a],
                },
            ],
        )
        .unwrap();
        let mut buf = &frag[..];
        let Some(mp4_atom::Any::Moof(moof)) = mp4_atom::Any::decode_maybe(&mut buf).unwrap() else {
            panic!("moof")
        };
        assert_eq!(moof.mfhd.sequence_number, 7);
        let moof_len = frag.len() - buf.len();
        // The data offsets point at each run's bytes in the mdat that follows.
        let off = |i: usize| moof.traf[i].trun[0].data_offset.unwrap() as usize;
        assert_eq!(&frag[off(0)..off(0) + 6], &v);
        assert_eq!(&frag[off(1)..off(1) + 3], &a);
        assert_eq!(off(0), moof_len + 8);
        assert_eq!(frag.len(), moof_len + 8 + 9);
    }
}
