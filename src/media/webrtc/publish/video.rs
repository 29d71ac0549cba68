//! H.264 from a WebRTC publisher into the hub's frame format (sans-IO).
//!
//! str0m depacketizes RTP into Annex-B access units (start codes). Browsers put SPS and PPS in
//! band before every IDR; the hub wants FLV tag bodies: an AVC sequence header (the decoder
//! configuration record built from the latest SPS/PPS) whenever it changes, then each access
//! unit with 4-byte NAL lengths. Parameter sets and access unit delimiters are not repeated in
//! the frames (the hub's consumers put the record's sets before IDRs themselves). A new SPS
//! mid-stream (the browser changed resolution) gives a new sequence header at its IDR, which the
//! hub turns into a new stream description (an HLS discontinuity). Frames before the first IDR
//! cannot be decoded and are dropped: the caller asks the publisher for a keyframe.

use bytes::{BufMut, Bytes, BytesMut};

use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::avc::{AnnexBNals, NalUnitType};

/// Largest access unit accepted (a 4K IDR at a high rate stays far below; str0m's depacketizer
/// already bounds what it assembles).
pub const MAX_ACCESS_UNIT: usize = 8 * 1024 * 1024;
/// Largest SPS or PPS kept.
const MAX_PARAMETER_SET: usize = 1024;

/// What one access unit gives the hub.
#[derive(Debug, Default, PartialEq)]
pub struct VideoOut {
    /// A new FLV AVC sequence header body, to be sent before the frame.
    pub header: Option<Bytes>,
    /// The frame's FLV body and whether it is a keyframe; `None` when it was dropped.
    pub frame: Option<(bool, Bytes)>,
}

/// Why an access unit was dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VideoDropped {
    /// Nothing decodable yet: no IDR with its SPS/PPS so far (ask for a keyframe).
    #[error("waiting for a keyframe with SPS and PPS")]
    NeedKeyframe,
    /// The access unit is larger than [`MAX_ACCESS_UNIT`].
    #[error("access unit of {0} bytes is too large")]
    TooLarge(usize),
    /// The SPS cannot be read (the decoder configuration record cannot be made).
    #[error("unreadable SPS")]
    BadSps,
    /// No slice in the access unit.
    #[error("no picture in the access unit")]
    Empty,
}

/// The H.264 state of one publisher.
#[derive(Debug, Default)]
pub struct H264Ingest {
    /// The latest SPS and PPS seen in band.
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The sets the hub's current sequence header was built from.
    sent: Option<(Bytes, Bytes)>,
}

impl H264Ingest {
    /// One Annex-B access unit in.
    pub fn push(&mut self, annexb: &[u8]) -> Result<VideoOut, VideoDropped> {
        if annexb.len() > MAX_ACCESS_UNIT {
            return Err(VideoDropped::TooLarge(annexb.len()));
        }
        let mut keyframe = false;
        let mut slices = false;
        let mut body = BytesMut::with_capacity(annexb.len() + 16);
        body.put_slice(&[0x27, 1, 0, 0, 0]);
        for nal in AnnexBNals::new(annexb) {
            match NalUnitType::of(nal) {
                Some(NalUnitType::Sps) if nal.len() <= MAX_PARAMETER_SET => {
                    self.sps = Some(Bytes::copy_from_slice(nal));
                }
                Some(NalUnitType::Pps) if nal.len() <= MAX_PARAMETER_SET => {
                    self.pps = Some(Bytes::copy_from_slice(nal));
                }
                Some(NalUnitType::Sps | NalUnitType::Pps | NalUnitType::Aud) | None => {}
                Some(t) => {
                    if t == NalUnitType::IdrSlice {
                        keyframe = true;
                    }
                    slices |= matches!(t, NalUnitType::IdrSlice | NalUnitType::NonIdrSlice);
                    body.put_u32(nal.len() as u32);
                    body.put_slice(nal);
                }
            }
        }
        if !slices {
            return Err(VideoDropped::Empty);
        }
        let mut out = VideoOut::default();
        if keyframe
            && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && self.sent.as_ref().is_none_or(|(s, p)| s != sps || p != pps)
        {
            let config = DecoderConfig::from_parameter_sets(sps.clone(), pps.clone())
                .map_err(|_| VideoDropped::BadSps)?;
            let mut header = BytesMut::with_capacity(64);
            header.put_slice(&[0x17, 0, 0, 0, 0]);
            config
                .encode(&mut header)
                .map_err(|_| VideoDropped::BadSps)?;
            out.header = Some(header.freeze());
            self.sent = Some((sps.clone(), pps.clone()));
        }
        if self.sent.is_none() {
            return Err(VideoDropped::NeedKeyframe);
        }
        if keyframe && let Some(first) = body.first_mut() {
            *first = 0x17;
        }
        out.frame = Some((keyframe, body.freeze()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use streamfleet_proto::avc::fixtures::{PPS_X264 as PPS, SPS_640X360 as SPS};

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn frames_before_the_first_idr_are_dropped() {
        let mut h = H264Ingest::default();
        let p = annexb(&[&[0x41, 0x9a, 0x01]]);
        assert_eq!(h.push(&p), Err(VideoDropped::NeedKeyframe));
        let no_sets = annexb(&[&[0x65, 0x88, 0x80]]);
        assert_eq!(h.push(&no_sets), Err(VideoDropped::NeedKeyframe));
    }

    #[test]
    fn an_idr_gives_a_sequence_header_once_and_length_prefixed_slices() {
        let mut h = H264Ingest::default();
        let idr = annexb(&[&[0x09, 0xf0], SPS, PPS, &[0x65, 0x88, 0x80]]);
        let out = h.push(&idr).expect("decodable");
        let header = out.header.expect("first sequence header");
        // FLV: keyframe|AVC, sequence header, composition time 0, then the record.
        assert_eq!(&header[..5], &[0x17, 0, 0, 0, 0]);
        let record = DecoderConfig::parse(&header.slice(5..)).expect("a valid record");
        assert_eq!(record.sps, vec![Bytes::from_static(SPS)]);
        assert_eq!(record.pps, vec![Bytes::from_static(PPS)]);
        let (key, body) = out.frame.expect("the frame");
        assert!(key);
        // keyframe|AVC, NALU, cts 0, one NAL of 3 bytes (SPS, PPS, AUD left out).
        assert_eq!(&body[..], &[0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x80]);

        // The same sets again: no new header; a P frame is an inter frame.
        assert!(h.push(&idr).expect("decodable").header.is_none());
        let (key, body) = h
            .push(&annexb(&[&[0x41, 0x9a]]))
            .expect("decodable")
            .frame
            .expect("the frame");
        assert!(!key);
        assert_eq!(&body[..], &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a]);
    }

    #[test]
    fn a_new_sps_gives_a_new_header_and_garbage_is_refused() {
        let mut h = H264Ingest::default();
        h.push(&annexb(&[SPS, PPS, &[0x65, 0x88]])).expect("first");
        let pps2: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let out = h
            .push(&annexb(&[SPS, pps2, &[0x65, 0x88]]))
            .expect("second");
        assert!(
            out.header.is_some(),
            "a changed parameter set is a new config"
        );
        assert_eq!(h.push(&[1, 2, 3]), Err(VideoDropped::Empty));
        let mut bad = H264Ingest::default();
        assert_eq!(
            bad.push(&annexb(&[&[0x67, 0xff], PPS, &[0x65, 0x88]])),
            Err(VideoDropped::BadSps)
        );
        assert_eq!(
            bad.push(&vec![0u8; MAX_ACCESS_UNIT + 1]),
            Err(VideoDropped::TooLarge(MAX_ACCESS_UNIT + 1))
        );
    }
}
