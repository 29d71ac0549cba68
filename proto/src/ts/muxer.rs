//! The MPEG-TS muxer: PES packetisation, adaptation fields and continuity counters.
//!
//! Each frame becomes one PES packet (header with PTS, and DTS when it differs), which is cut
//! into 184-byte transport payloads. The first packet of a PES carries `payload_unit_start` and,
//! when needed, an adaptation field with the PCR (on the PCR PID: video, or audio when there is no
//! video), `random_access_indicator` (keyframes) and `discontinuity_indicator` (after
//! [`TsMuxer::set_discontinuity`]). The last packet is padded with adaptation-field stuffing so
//! every packet is exactly 188 bytes. Timestamps are taken modulo 2^33, so they wrap as MPEG-TS
//! requires.

use bytes::BufMut;

use super::psi::{pat_section, pmt_section, section_packet};
use super::{AUDIO_PID, PACKET_LEN, PMT_PID, TIMESTAMP_MASK, TsError, VIDEO_PID};

/// Largest audio payload of one PES: PES_packet_length (16 bits) also counts 8 header bytes.
pub const MAX_AUDIO_PES_PAYLOAD: usize = 0xFFFF - 8;
/// Largest video access unit accepted (a 4K keyframe at a high bitrate is a few MiB).
pub const MAX_VIDEO_FRAME_LEN: usize = 16 * 1024 * 1024;
/// How far the PCR runs behind the DTS of the frame it travels with (0.7 s, as nginx-rtmp and
/// ffmpeg's default mux delay), so decoders see a buffering window.
pub const PCR_DELAY_90K: u64 = 63_000;

/// Transport packet header size.
const HEADER_LEN: usize = 4;
/// Payload bytes of a packet without adaptation field.
const MAX_PAYLOAD: usize = PACKET_LEN - HEADER_LEN;
/// PES stream_id of the first video stream.
const STREAM_ID_VIDEO: u8 = 0xE0;
/// PES stream_id of the first audio stream.
const STREAM_ID_AUDIO: u8 = 0xC0;

/// Which elementary streams a segment carries; the PMT lists exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tracks {
    /// H.264 only.
    Video,
    /// AAC only.
    Audio,
    /// H.264 and AAC.
    VideoAndAudio,
}

impl Tracks {
    /// True if there is a video track.
    pub fn has_video(self) -> bool {
        matches!(self, Self::Video | Self::VideoAndAudio)
    }

    /// True if there is an audio track.
    pub fn has_audio(self) -> bool {
        matches!(self, Self::Audio | Self::VideoAndAudio)
    }
}

/// Adaptation-field content wanted on the first packet of a PES.
#[derive(Debug, Clone, Copy, Default)]
struct FirstPacketFlags {
    /// PCR base (90 kHz) to carry, if this PES is on the PCR PID.
    pcr: Option<u64>,
    /// random_access_indicator: a decoder can start here.
    random_access: bool,
    /// discontinuity_indicator: timestamps or continuity restart here.
    discontinuity: bool,
}

/// An MPEG-TS muxer for one program of up to one video and one audio track.
///
/// Its whole state is a few bits ([`TsMuxer::to_bits`]): a packager that starts from another's
/// state at a segment boundary writes the same packets as that one would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsMuxer {
    /// The tracks of the program.
    tracks: Tracks,
    /// Continuity counter of the PAT PID.
    cc_pat: u8,
    /// Continuity counter of the PMT PID.
    cc_pmt: u8,
    /// Continuity counter of the video PID.
    cc_video: u8,
    /// Continuity counter of the audio PID.
    cc_audio: u8,
    /// Set by [`TsMuxer::set_discontinuity`], cleared by the next random-access PES.
    pending_discontinuity: bool,
}

impl TsMuxer {
    /// A muxer for `tracks`, all continuity counters at 0.
    pub fn new(tracks: Tracks) -> Self {
        Self {
            tracks,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
            pending_discontinuity: false,
        }
    }

    /// The tracks this muxer writes.
    pub fn tracks(&self) -> Tracks {
        self.tracks
    }

    /// The whole state in 21 bits: continuity counters of PAT, PMT, video and audio (4 bits
    /// each, from bit 0), the tracks (bits 16-17: 1 video, 2 audio, 3 both) and the pending
    /// discontinuity (bit 20).
    pub fn to_bits(&self) -> u32 {
        let tracks = match self.tracks {
            Tracks::Video => 1,
            Tracks::Audio => 2,
            Tracks::VideoAndAudio => 3,
        };
        u32::from(self.cc_pat)
            | u32::from(self.cc_pmt) << 4
            | u32::from(self.cc_video) << 8
            | u32::from(self.cc_audio) << 12
            | tracks << 16
            | u32::from(self.pending_discontinuity) << 20
    }

    /// The muxer whose [`TsMuxer::to_bits`] is `bits`; `None` for bits no muxer has.
    pub fn from_bits(bits: u32) -> Option<Self> {
        if bits >> 21 != 0 || bits & 0xC_0000 != 0 {
            return None;
        }
        let tracks = match (bits >> 16) & 0b11 {
            1 => Tracks::Video,
            2 => Tracks::Audio,
            3 => Tracks::VideoAndAudio,
            _ => return None,
        };
        let cc = |shift: u32| ((bits >> shift) & 0x0F) as u8;
        Some(Self {
            tracks,
            cc_pat: cc(0),
            cc_pmt: cc(4),
            cc_video: cc(8),
            cc_audio: cc(12),
            pending_discontinuity: bits & (1 << 20) != 0,
        })
    }

    /// The PID that carries the PCR: video when present, audio otherwise.
    pub fn pcr_pid(&self) -> u16 {
        if self.tracks.has_video() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// Writes the PAT and the PMT (two packets); every segment starts with them.
    pub fn write_psi(&mut self, out: &mut impl BufMut) {
        out.put_slice(&section_packet(0, self.cc_pat, &pat_section()));
        self.cc_pat = (self.cc_pat + 1) & 0x0F;
        let pmt = pmt_section(
            self.tracks.has_video(),
            self.tracks.has_audio(),
            self.pcr_pid(),
        );
        out.put_slice(&section_packet(PMT_PID, self.cc_pmt, &pmt));
        self.cc_pmt = (self.cc_pmt + 1) & 0x0F;
    }

    /// Marks the next keyframe (or, without video, the next audio PES) with
    /// `discontinuity_indicator`, e.g. after the publisher reconnected.
    pub fn set_discontinuity(&mut self) {
        self.pending_discontinuity = true;
    }

    /// Writes one H.264 access unit in Annex B form as a PES packet. Timestamps are 90 kHz
    /// ticks, taken modulo 2^33; DTS is written only when it differs from PTS. The PES length is
    /// 0 (unbounded) when the frame is too large for the 16-bit field.
    pub fn write_video(
        &mut self,
        pts: u64,
        dts: u64,
        keyframe: bool,
        annexb: &[u8],
        out: &mut impl BufMut,
    ) -> Result<(), TsError> {
        if !self.tracks.has_video() {
            return Err(TsError::NoVideoTrack);
        }
        if annexb.is_empty() {
            return Err(TsError::EmptyFrame("video"));
        }
        if annexb.len() > MAX_VIDEO_FRAME_LEN {
            return Err(TsError::VideoTooLarge {
                len: annexb.len(),
                limit: MAX_VIDEO_FRAME_LEN,
            });
        }
        let (pts, dts) = (pts & TIMESTAMP_MASK, dts & TIMESTAMP_MASK);
        let header = pes_header(
            STREAM_ID_VIDEO,
            pts,
            (dts != pts).then_some(dts),
            annexb.len(),
        );
        let discontinuity = keyframe && std::mem::take(&mut self.pending_discontinuity);
        let flags = FirstPacketFlags {
            pcr: Some(dts.wrapping_sub(PCR_DELAY_90K) & TIMESTAMP_MASK),
            random_access: keyframe,
            discontinuity,
        };
        write_pes(VIDEO_PID, &mut self.cc_video, flags, &header, annexb, out);
        Ok(())
    }

    /// Writes ADTS frames (one or several, back to back) as one audio PES packet stamped `pts`.
    pub fn write_audio(
        &mut self,
        pts: u64,
        adts: &[u8],
        out: &mut impl BufMut,
    ) -> Result<(), TsError> {
        if !self.tracks.has_audio() {
            return Err(TsError::NoAudioTrack);
        }
        if adts.is_empty() {
            return Err(TsError::EmptyFrame("audio"));
        }
        if adts.len() > MAX_AUDIO_PES_PAYLOAD {
            return Err(TsError::AudioTooLarge {
                len: adts.len(),
                limit: MAX_AUDIO_PES_PAYLOAD,
            });
        }
        let pts = pts & TIMESTAMP_MASK;
        let header = pes_header(STREAM_ID_AUDIO, pts, None, adts.len());
        let carries_pcr = !self.tracks.has_video();
        let flags = FirstPacketFlags {
            pcr: carries_pcr.then(|| pts.wrapping_sub(PCR_DELAY_90K) & TIMESTAMP_MASK),
            random_access: carries_pcr,
            discontinuity: carries_pcr && std::mem::take(&mut self.pending_discontinuity),
        };
        write_pes(AUDIO_PID, &mut self.cc_audio, flags, &header, adts, out);
        Ok(())
    }
}

/// Writes a 5-byte PTS or DTS field with its 4-bit `prefix` and marker bits.
fn timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    // Each cast keeps only the bits its field holds; `ts` is already 33 bits.
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8 & 0x7F) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8 & 0x7F) << 1) | 1,
    ]
}

/// Builds a PES header for `payload_len` bytes of elementary stream data.
fn pes_header(stream_id: u8, pts: u64, dts: Option<u64>, payload_len: usize) -> Vec<u8> {
    let header_data_len: u8 = if dts.is_some() { 10 } else { 5 };
    // 0 means "unbounded", allowed for video only; audio callers keep under the limit.
    let packet_len = u16::try_from(3 + usize::from(header_data_len) + payload_len).unwrap_or(0);
    let mut header = Vec::with_capacity(19);
    header.extend_from_slice(&[0x00, 0x00, 0x01, stream_id]);
    header.extend_from_slice(&packet_len.to_be_bytes());
    header.push(0x84); // marker '10', not scrambled, data_alignment_indicator
    header.push(if dts.is_some() { 0xC0 } else { 0x80 }); // PTS_DTS_flags
    header.push(header_data_len);
    match dts {
        Some(dts) => {
            header.extend_from_slice(&timestamp(0b0011, pts));
            header.extend_from_slice(&timestamp(0b0001, dts));
        }
        None => header.extend_from_slice(&timestamp(0b0010, pts)),
    }
    header
}

/// Writes a PCR (33-bit base, 6 reserved bits, 9-bit extension 0).
fn pcr_bytes(base: u64) -> [u8; 6] {
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        ((base as u8 & 0x01) << 7) | 0x7E,
        0x00,
    ]
}

/// Copies as much of `src` as fits into the front of `dst`, advancing `src`; returns the count.
fn copy_front(dst: &mut [u8], src: &mut &[u8]) -> usize {
    let n = dst.len().min(src.len());
    let (from, rest) = src.split_at(n);
    if let Some(to) = dst.get_mut(..n) {
        to.copy_from_slice(from);
    }
    *src = rest;
    n
}

/// Cuts a PES (its header, then its payload) into transport packets on `pid`.
fn write_pes(
    pid: u16,
    cc: &mut u8,
    flags: FirstPacketFlags,
    mut header: &[u8],
    mut payload: &[u8],
    out: &mut impl BufMut,
) {
    let [pid_high, pid_low] = pid.to_be_bytes();
    let mut first = true;
    while !header.is_empty() || !payload.is_empty() {
        let wanted = if first {
            flags
        } else {
            FirstPacketFlags::default()
        };
        let pcr = wanted.pcr.map(pcr_bytes);
        let has_fields = pcr.is_some() || wanted.random_access || wanted.discontinuity;
        // Adaptation field: length byte, then (when any field or stuffing > 1 byte is needed)
        // a flags byte, the PCR and 0xFF stuffing.
        let fields_len = if has_fields {
            2 + pcr.map_or(0, |p| p.len())
        } else {
            0
        };
        let remaining = header.len() + payload.len();
        let stuffing = (MAX_PAYLOAD - fields_len).saturating_sub(remaining);
        let af_len = match (has_fields, stuffing) {
            (true, s) => fields_len + s,
            (false, 0) => 0,
            (false, s) => s,
        };

        let mut packet = [0xFF; PACKET_LEN];
        let (head, body) = packet.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&[
            0x47,
            (u8::from(first) << 6) | (pid_high & 0x1F),
            pid_low,
            (if af_len > 0 { 0x30 } else { 0x10 }) | (*cc & 0x0F),
        ]);
        // af_len <= MAX_PAYLOAD - 1: at least one payload byte remains, so split_at_mut holds.
        let (af, data) = body.split_at_mut(af_len);
        if let Some((length, rest)) = af.split_first_mut() {
            // The adaptation_field_length byte counts what follows it: at most 182.
            *length = (af_len - 1) as u8;
            if let Some((flag_byte, rest)) = rest.split_first_mut() {
                *flag_byte = (u8::from(wanted.discontinuity) << 7)
                    | (u8::from(wanted.random_access) << 6)
                    | (u8::from(pcr.is_some()) << 4);
                if let (Some(pcr), Some(slot)) = (pcr, rest.get_mut(..6)) {
                    slot.copy_from_slice(&pcr);
                }
                // The rest of `af` is already 0xFF stuffing.
            }
        }
        let copied = copy_front(data, &mut header);
        if let Some(data) = data.get_mut(copied..) {
            copy_front(data, &mut payload);
        }
        out.put_slice(&packet);
        *cc = (*cc + 1) & 0x0F;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::reader::{self, AdaptationField};
    use super::super::{STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264};
    use super::*;

    /// Muxes with `f` and returns the parsed packets, checking continuity on the way.
    fn mux(tracks: Tracks, f: impl FnOnce(&mut TsMuxer, &mut Vec<u8>)) -> Vec<reader::Packet> {
        let mut muxer = TsMuxer::new(tracks);
        let mut out = Vec::new();
        f(&mut muxer, &mut out);
        let packets = reader::packets(&out);
        reader::check_continuity(&packets);
        packets
    }

    #[test]
    fn psi_lists_present_tracks() {
        let packets = mux(Tracks::VideoAndAudio, |m, out| m.write_psi(out));
        assert_eq!(packets.len(), 2);
        assert_eq!(reader::pat(&packets[0]), PMT_PID);
        let (pcr_pid, streams) = reader::pmt(&packets[1]);
        assert_eq!(pcr_pid, VIDEO_PID);
        assert_eq!(
            streams,
            vec![
                (STREAM_TYPE_H264, VIDEO_PID),
                (STREAM_TYPE_AAC_ADTS, AUDIO_PID)
            ]
        );

        let packets = mux(Tracks::Video, |m, out| m.write_psi(out));
        assert_eq!(
            reader::pmt(&packets[1]),
            (VIDEO_PID, vec![(STREAM_TYPE_H264, VIDEO_PID)])
        );
        let packets = mux(Tracks::Audio, |m, out| m.write_psi(out));
        assert_eq!(
            reader::pmt(&packets[1]),
            (AUDIO_PID, vec![(STREAM_TYPE_AAC_ADTS, AUDIO_PID)])
        );
    }

    #[test]
    fn a_muxer_resumed_from_its_bits_writes_the_same_packets() {
        let mut a = TsMuxer::new(Tracks::VideoAndAudio);
        let mut scratch = Vec::new();
        a.write_psi(&mut scratch);
        a.write_audio(
            90_000,
            &[0xFF, 0xF1, 0x50, 0x80, 0x01, 0x7F, 0xFC, 1],
            &mut scratch,
        )
        .unwrap();
        a.set_discontinuity();
        let mut b = TsMuxer::from_bits(a.to_bits()).expect("valid bits");
        assert_eq!(a, b);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        for (m, out) in [(&mut a, &mut out_a), (&mut b, &mut out_b)] {
            m.write_psi(out);
            m.write_video(93_000, 90_000, true, &[0, 0, 0, 1, 0x65, 1, 2, 3], out)
                .unwrap();
        }
        assert_eq!(out_a, out_b);
        for tracks in [Tracks::Video, Tracks::Audio] {
            let m = TsMuxer::new(tracks);
            assert_eq!(TsMuxer::from_bits(m.to_bits()), Some(m));
        }
        assert_eq!(TsMuxer::from_bits(0), None, "no tracks");
        assert_eq!(TsMuxer::from_bits(1 << 21 | 1 << 16), None, "unknown bits");
    }

    #[test]
    fn small_keyframe_bytes() {
        let mut muxer = TsMuxer::new(Tracks::Video);
        let mut out = Vec::new();
        muxer
            .write_video(126_000, 126_000, true, &[0, 0, 0, 1, 0x09, 0xF0], &mut out)
            .unwrap();
        assert_eq!(out.len(), PACKET_LEN);
        assert_eq!(
            &out[..12],
            &[
                0x47, // sync byte
                0x41, 0x00, // payload_unit_start, PID 0x100
                0x30, // adaptation field + payload, CC 0
                0xA3, // adaptation_field_length 163 (184 - 20 bytes of PES)
                0x50, // random_access_indicator + PCR_flag
                0x00, 0x00, 0x7B, 0x0C, 0x7E, 0x00, // PCR base 63000 (126000 - 0.7 s)
            ]
        );
        assert!(out[12..168].iter().all(|&b| b == 0xFF), "stuffing");
        assert_eq!(
            &out[168..],
            &[
                0x00, 0x00, 0x01, 0xE0, // PES start code, video stream 0
                0x00, 0x0E, // PES_packet_length 14
                0x84, 0x80, 0x05, // data_alignment, PTS only, 5 header bytes
                0x21, 0x00, 0x07, 0xD8, 0x61, // PTS 126000
                0x00, 0x00, 0x00, 0x01, 0x09, 0xF0, // the access unit
            ]
        );
    }

    #[test]
    fn large_frame_spans_packets_with_pts_and_dts() {
        let frame: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let packets = mux(Tracks::VideoAndAudio, |m, out| {
            m.write_psi(out);
            m.write_video(9_000, 6_000, false, &frame, out).unwrap();
        });
        let video: Vec<_> = packets.iter().filter(|p| p.pid == VIDEO_PID).collect();
        assert_eq!(video.iter().filter(|p| p.start).count(), 1);
        assert!(
            video[1..]
                .iter()
                .all(|p| p.af.is_none() || p.af.unwrap().pcr.is_none())
        );
        let pes = reader::pes_on(&packets, VIDEO_PID);
        assert_eq!(pes.len(), 1);
        assert_eq!((pes[0].pts, pes[0].dts), (9_000, Some(6_000)));
        assert_eq!(pes[0].declared_len, 0, "too long for the 16-bit length");
        let af = pes[0].af.unwrap();
        assert!(!af.random_access);
        assert_eq!(
            af.pcr,
            Some((6_000u64.wrapping_sub(PCR_DELAY_90K)) & TIMESTAMP_MASK)
        );
        assert_eq!(pes[0].data, frame);
    }

    #[test]
    fn every_stuffing_size_fills_packets_exactly() {
        for len in 1..=400 {
            let frame = vec![0xAB; len];
            let packets = mux(Tracks::VideoAndAudio, |m, out| {
                m.write_video(0, 0, len % 2 == 0, &frame, out).unwrap();
                m.write_audio(0, &frame, out).unwrap();
            });
            for pid in [VIDEO_PID, AUDIO_PID] {
                let pes = reader::pes_on(&packets, pid);
                assert_eq!(pes.len(), 1);
                assert_eq!(pes[0].data, frame, "payload of {len} bytes on PID {pid:#x}");
            }
        }
    }

    #[test]
    fn timestamps_wrap_at_33_bits() {
        let packets = mux(Tracks::Video, |m, out| {
            m.write_video((1 << 33) + 3_000, (1 << 33) + 3_000, true, &[1], out)
                .unwrap();
            m.write_video(TIMESTAMP_MASK, TIMESTAMP_MASK - 3_000, false, &[2], out)
                .unwrap();
        });
        let pes = reader::pes_on(&packets, VIDEO_PID);
        assert_eq!((pes[0].pts, pes[0].dts), (3_000, None));
        assert_eq!(
            pes[0].af.unwrap().pcr,
            Some((1 << 33) + 3_000 - PCR_DELAY_90K)
        );
        assert_eq!(
            (pes[1].pts, pes[1].dts),
            (TIMESTAMP_MASK, Some(TIMESTAMP_MASK - 3_000))
        );
    }

    #[test]
    fn audio_only_carries_pcr_on_audio() {
        let adts = [0xFF, 0xF1, 0x50, 0x80, 0x01, 0x7F, 0xFC, 0x21];
        let packets = mux(Tracks::Audio, |m, out| {
            m.write_psi(out);
            m.write_audio(90_000, &[adts, adts].concat(), out).unwrap();
        });
        assert_eq!(reader::pmt(&packets[1]).0, AUDIO_PID);
        let pes = reader::pes_on(&packets, AUDIO_PID);
        assert_eq!(pes[0].stream_id, 0xC0);
        assert_eq!((pes[0].pts, pes[0].dts), (90_000, None));
        assert_eq!(usize::from(pes[0].declared_len), 8 + 16);
        assert_eq!(
            pes[0].af,
            Some(AdaptationField {
                discontinuity: false,
                random_access: true,
                pcr: Some(27_000)
            })
        );
        assert_eq!(pes[0].data.len(), 16);
    }

    #[test]
    fn audio_beside_video_has_no_pcr() {
        let packets = mux(Tracks::VideoAndAudio, |m, out| {
            m.write_audio(0, &[1; 300], out).unwrap()
        });
        let pes = reader::pes_on(&packets, AUDIO_PID);
        assert!(
            pes[0]
                .af
                .is_none_or(|af| af.pcr.is_none() && !af.random_access)
        );
    }

    #[test]
    fn discontinuity_waits_for_a_keyframe() {
        let packets = mux(Tracks::Video, |m, out| {
            m.set_discontinuity();
            m.write_video(0, 0, false, &[1], out).unwrap();
            m.write_video(3_000, 3_000, true, &[2], out).unwrap();
            m.write_video(6_000, 6_000, true, &[3], out).unwrap();
        });
        let flags: Vec<_> = reader::pes_on(&packets, VIDEO_PID)
            .iter()
            .map(|p| p.af.map(|af| (af.discontinuity, af.random_access)))
            .collect();
        assert_eq!(
            flags,
            vec![
                Some((false, false)),
                Some((true, true)),
                Some((false, true))
            ]
        );
    }

    #[test]
    fn continuity_counters_wrap_per_pid() {
        let mut muxer = TsMuxer::new(Tracks::VideoAndAudio);
        let mut out = Vec::new();
        for i in 0..20u64 {
            muxer.write_psi(&mut out);
            muxer
                .write_video(i * 3_000, i * 3_000, i == 0, &[7; 200], &mut out)
                .unwrap();
            muxer.write_audio(i * 1_920, &[8; 10], &mut out).unwrap();
        }
        let packets = reader::packets(&out);
        reader::check_continuity(&packets);
        let last_video = packets.iter().rfind(|p| p.pid == VIDEO_PID).unwrap();
        assert_eq!(last_video.cc, (40 - 1) % 16, "two packets per frame");
    }

    #[test]
    fn rejects_bad_input_without_writing() {
        let mut out = Vec::new();
        let mut video_only = TsMuxer::new(Tracks::Video);
        assert!(matches!(
            video_only.write_audio(0, &[1], &mut out),
            Err(TsError::NoAudioTrack)
        ));
        assert!(matches!(
            video_only.write_video(0, 0, true, &[], &mut out),
            Err(TsError::EmptyFrame(_))
        ));
        let mut audio_only = TsMuxer::new(Tracks::Audio);
        assert!(matches!(
            audio_only.write_video(0, 0, true, &[1], &mut out),
            Err(TsError::NoVideoTrack)
        ));
        let big = vec![0; MAX_AUDIO_PES_PAYLOAD + 1];
        assert!(matches!(
            audio_only.write_audio(0, &big, &mut out),
            Err(TsError::AudioTooLarge { .. })
        ));
        assert!(out.is_empty());
        audio_only.write_audio(0, &big[1..], &mut out).unwrap();
        let pes = reader::pes_on(&reader::packets(&out), AUDIO_PID);
        assert_eq!(pes[0].declared_len, 0xFFFF);
    }
}
