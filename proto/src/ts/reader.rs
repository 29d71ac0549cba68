//! A small MPEG-TS reader for tests: it parses what the muxer writes so tests can check
//! headers, continuity counters, adaptation fields, PSI and PES fields byte by byte.
//!
//! It panics on anything malformed (that is the assertion) and is compiled only for tests.

use super::psi::crc32_mpeg2;
use super::{PACKET_LEN, PMT_PID};

/// The adaptation-field flags and PCR of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptationField {
    /// `discontinuity_indicator`.
    pub discontinuity: bool,
    /// `random_access_indicator`.
    pub random_access: bool,
    /// PCR base, if present.
    pub pcr: Option<u64>,
}

/// One transport packet.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The PID.
    pub pid: u16,
    /// `payload_unit_start_indicator`.
    pub start: bool,
    /// The continuity counter.
    pub cc: u8,
    /// The adaptation field, if any.
    pub af: Option<AdaptationField>,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// Parses a byte stream into packets, asserting size, sync byte and adaptation-field sanity.
pub fn packets(data: &[u8]) -> Vec<Packet> {
    assert_eq!(
        data.len() % PACKET_LEN,
        0,
        "stream is not a whole number of packets"
    );
    data.chunks(PACKET_LEN)
        .map(|p| {
            assert_eq!(p[0], 0x47, "sync byte");
            assert_eq!(p[1] & 0x80, 0, "transport_error_indicator");
            let pid = u16::from_be_bytes([p[1] & 0x1F, p[2]]);
            let afc = (p[3] >> 4) & 0x03;
            assert!(
                afc == 1 || afc == 3,
                "every packet written carries a payload"
            );
            let mut at = 4;
            let af = (afc == 3).then(|| {
                let len = usize::from(p[4]);
                assert!(len <= 182, "adaptation field leaves room for payload");
                at = 5 + len;
                if len == 0 {
                    return AdaptationField {
                        discontinuity: false,
                        random_access: false,
                        pcr: None,
                    };
                }
                let flags = p[5];
                let pcr = (flags & 0x10 != 0).then(|| {
                    let b = &p[6..12];
                    assert_eq!(b[4] & 0x7E, 0x7E, "PCR reserved bits");
                    (u64::from(b[0]) << 25)
                        | (u64::from(b[1]) << 17)
                        | (u64::from(b[2]) << 9)
                        | (u64::from(b[3]) << 1)
                        | u64::from(b[4] >> 7)
                });
                let used = 1 + if pcr.is_some() { 6 } else { 0 };
                assert!(
                    p[5 + used..at].iter().all(|&b| b == 0xFF),
                    "stuffing is 0xFF"
                );
                AdaptationField {
                    discontinuity: flags & 0x80 != 0,
                    random_access: flags & 0x40 != 0,
                    pcr,
                }
            });
            Packet {
                pid,
                start: p[1] & 0x40 != 0,
                cc: p[3] & 0x0F,
                af,
                payload: p[at..].to_vec(),
            }
        })
        .collect()
}

/// Asserts that on every PID the continuity counter goes up by one (mod 16) per packet,
/// starting from the first value seen.
pub fn check_continuity(packets: &[Packet]) {
    let mut last = std::collections::HashMap::new();
    for (i, p) in packets.iter().enumerate() {
        if let Some(prev) = last.insert(p.pid, p.cc) {
            assert_eq!(
                p.cc,
                (prev + 1) & 0x0F,
                "CC on PID {:#x} at packet {i}",
                p.pid
            );
        }
    }
}

/// Returns a PSI section from a single-packet table, checking pointer field and CRC.
fn section(packet: &Packet, table_id: u8) -> Vec<u8> {
    assert!(packet.start);
    assert_eq!(packet.payload[0], 0, "pointer_field");
    let s = &packet.payload[1..];
    assert_eq!(s[0], table_id);
    let len = usize::from(u16::from_be_bytes([s[1], s[2]]) & 0x0FFF);
    let section = s[..3 + len].to_vec();
    assert_eq!(crc32_mpeg2(&section), 0, "section CRC");
    assert!(s[3 + len..].iter().all(|&b| b == 0xFF), "PSI stuffing");
    section
}

/// Parses the PAT packet and returns the PMT PID of its single program.
pub fn pat(packet: &Packet) -> u16 {
    assert_eq!(packet.pid, 0);
    let s = section(packet, 0x00);
    assert_eq!(s.len(), 16, "one program");
    assert_eq!(u16::from_be_bytes([s[8], s[9]]), 1, "program_number");
    u16::from_be_bytes([s[10] & 0x1F, s[11]])
}

/// Parses the PMT packet and returns the PCR PID and the (stream_type, PID) list.
pub fn pmt(packet: &Packet) -> (u16, Vec<(u8, u16)>) {
    assert_eq!(packet.pid, PMT_PID);
    let s = section(packet, 0x02);
    let pcr_pid = u16::from_be_bytes([s[8] & 0x1F, s[9]]);
    let info_len = usize::from(u16::from_be_bytes([s[10], s[11]]) & 0x0FFF);
    let mut streams = Vec::new();
    let mut at = 12 + info_len;
    while at < s.len() - 4 {
        streams.push((s[at], u16::from_be_bytes([s[at + 1] & 0x1F, s[at + 2]])));
        at += 5 + usize::from(u16::from_be_bytes([s[at + 3], s[at + 4]]) & 0x0FFF);
    }
    (pcr_pid, streams)
}

/// One reassembled PES packet.
#[derive(Debug, Clone)]
pub struct Pes {
    /// The stream_id.
    pub stream_id: u8,
    /// PES_packet_length as written.
    pub declared_len: u16,
    /// The PTS.
    pub pts: u64,
    /// The DTS, if written.
    pub dts: Option<u64>,
    /// The adaptation field of the PES's first packet.
    pub af: Option<AdaptationField>,
    /// The elementary stream bytes.
    pub data: Vec<u8>,
}

/// Decodes a 5-byte PTS/DTS field, checking its prefix and marker bits.
fn timestamp(b: &[u8], prefix: u8) -> u64 {
    assert_eq!(b[0] >> 4, prefix, "timestamp prefix");
    assert_eq!(b[0] & 1 & b[2] & b[4] & 1, 1, "marker bits");
    (u64::from((b[0] >> 1) & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// Reassembles the PES packets on `pid`.
pub fn pes_on(packets: &[Packet], pid: u16) -> Vec<Pes> {
    let mut out: Vec<(Option<AdaptationField>, Vec<u8>)> = Vec::new();
    for p in packets.iter().filter(|p| p.pid == pid) {
        if p.start {
            out.push((p.af, Vec::new()));
        }
        out.last_mut()
            .expect("PES starts with payload_unit_start")
            .1
            .extend_from_slice(&p.payload);
    }
    out.into_iter()
        .map(|(af, raw)| {
            assert_eq!(&raw[..3], &[0, 0, 1], "PES start code");
            let declared_len = u16::from_be_bytes([raw[4], raw[5]]);
            if declared_len != 0 {
                assert_eq!(
                    usize::from(declared_len),
                    raw.len() - 6,
                    "PES_packet_length"
                );
            }
            assert_eq!(raw[6] & 0xC0, 0x80, "PES marker bits");
            let flags = raw[7] >> 6;
            let header_len = usize::from(raw[8]);
            let (pts, dts) = match flags {
                0b10 => (timestamp(&raw[9..14], 0b0010), None),
                0b11 => (
                    timestamp(&raw[9..14], 0b0011),
                    Some(timestamp(&raw[14..19], 0b0001)),
                ),
                other => panic!("PTS_DTS_flags {other:#b}"),
            };
            Pes {
                stream_id: raw[3],
                declared_len,
                pts,
                dts,
                af,
                data: raw[9 + header_len..].to_vec(),
            }
        })
        .collect()
}
