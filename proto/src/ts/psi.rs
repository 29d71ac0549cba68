//! Program-specific information: the PAT and PMT sections and their CRC-32.
//!
//! Each table is one section that fits in one transport packet: pointer field 0, the section,
//! then 0xFF stuffing. The PAT names one program whose PMT lives on [`PMT_PID`]; the PMT lists
//! only the tracks the muxer was created with and names the PCR PID.

use super::{AUDIO_PID, PACKET_LEN, PMT_PID, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, VIDEO_PID};

/// The program number of the single program.
const PROGRAM_NUMBER: u16 = 1;
/// The transport_stream_id written in the PAT.
const TRANSPORT_STREAM_ID: u16 = 1;

/// CRC-32/MPEG-2 lookup table (polynomial 0x04C11DB7, MSB first).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32/MPEG-2 of `data` (initial value all ones, no final XOR).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

/// Appends a section's CRC after filling in its 12-bit section_length.
fn finish_section(mut section: Vec<u8>) -> Vec<u8> {
    // section_length counts the bytes after itself (3 header bytes) plus the 4-byte CRC. PSI
    // sections here hold at most two stream entries, far under the 1021-byte maximum.
    let length = (section.len() - 3 + 4) as u16;
    if let Some(bytes) = section.get_mut(1..3) {
        bytes.copy_from_slice(&(0xB000 | length).to_be_bytes());
    }
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    section
}

/// The PAT section.
pub fn pat_section() -> Vec<u8> {
    let mut s = vec![0x00, 0, 0]; // table_id 0, section_length filled in later
    s.extend_from_slice(&TRANSPORT_STREAM_ID.to_be_bytes());
    s.extend_from_slice(&[0xC1, 0x00, 0x00]); // version 0, current; section 0 of 0
    s.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
    s.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
    finish_section(s)
}

/// The PMT section for the given tracks; the PCR travels on `pcr_pid`.
pub fn pmt_section(video: bool, audio: bool, pcr_pid: u16) -> Vec<u8> {
    let mut s = vec![0x02, 0, 0]; // table_id 2, section_length filled in later
    s.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
    s.extend_from_slice(&[0xC1, 0x00, 0x00]); // version 0, current; section 0 of 0
    s.extend_from_slice(&(0xE000 | pcr_pid).to_be_bytes());
    s.extend_from_slice(&[0xF0, 0x00]); // program_info_length 0
    for (present, stream_type, pid) in [
        (video, STREAM_TYPE_H264, VIDEO_PID),
        (audio, STREAM_TYPE_AAC_ADTS, AUDIO_PID),
    ] {
        if present {
            s.push(stream_type);
            s.extend_from_slice(&(0xE000 | pid).to_be_bytes());
            s.extend_from_slice(&[0xF0, 0x00]); // ES_info_length 0
        }
    }
    finish_section(s)
}

/// Wraps a section in one transport packet on `pid` with continuity counter `cc`.
pub fn section_packet(pid: u16, cc: u8, section: &[u8]) -> [u8; PACKET_LEN] {
    let mut packet = [0xFF; PACKET_LEN];
    let [pid_high, pid_low] = pid.to_be_bytes();
    // sync byte; payload_unit_start + PID; payload only + CC; pointer_field 0.
    let header = [
        0x47,
        0x40 | (pid_high & 0x1F),
        pid_low,
        0x10 | (cc & 0x0F),
        0x00,
    ];
    let (head, rest) = packet.split_at_mut(header.len());
    head.copy_from_slice(&header);
    // Sections built here are under 40 bytes, well within the 183 bytes left.
    let len = section.len().min(rest.len());
    if let (Some(dst), Some(src)) = (rest.get_mut(..len), section.get(..len)) {
        dst.copy_from_slice(src);
    }
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_vector() {
        // CRC-32/MPEG-2 check value for "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        // A section followed by its CRC checks to zero.
        assert_eq!(crc32_mpeg2(&pat_section()), 0);
    }

    #[test]
    fn pat_bytes() {
        assert_eq!(
            pat_section(),
            [
                0x00, // table_id: program_association_section
                0xB0, 0x0D, // syntax indicator, reserved, section_length 13
                0x00, 0x01, // transport_stream_id 1
                0xC1, // reserved, version 0, current_next 1
                0x00, 0x00, // section_number, last_section_number
                0x00, 0x01, // program_number 1
                0xF0, 0x00, // reserved + program_map_PID 0x1000
                0x2A, 0xB1, 0x04, 0xB2, // CRC-32 (the value ffmpeg writes for this PAT)
            ]
        );
    }

    #[test]
    fn pmt_bytes_list_only_present_tracks() {
        let both = pmt_section(true, true, VIDEO_PID);
        assert_eq!(
            &both[..both.len() - 4],
            [
                0x02, // table_id: TS_program_map_section
                0xB0, 0x17, // section_length 23
                0x00, 0x01, // program_number 1
                0xC1, 0x00, 0x00, // version 0, current; section 0 of 0
                0xE1, 0x00, // PCR_PID 0x100
                0xF0, 0x00, // program_info_length 0
                0x1B, 0xE1, 0x00, 0xF0, 0x00, // H.264 on PID 0x100
                0x0F, 0xE1, 0x01, 0xF0, 0x00, // AAC ADTS on PID 0x101
            ]
        );
        assert_eq!(crc32_mpeg2(&both), 0);
        let audio_only = pmt_section(false, true, AUDIO_PID);
        assert_eq!(audio_only.len(), both.len() - 5);
        assert_eq!(&audio_only[8..10], &[0xE1, 0x01], "PCR on the audio PID");
        assert_eq!(audio_only[12], STREAM_TYPE_AAC_ADTS);
    }

    #[test]
    fn section_packet_layout() {
        let packet = section_packet(PMT_PID, 5, &pat_section());
        assert_eq!(&packet[..5], &[0x47, 0x50, 0x00, 0x15, 0x00]);
        assert_eq!(&packet[5..21], &pat_section()[..]);
        assert!(packet[21..].iter().all(|&b| b == 0xFF));
    }
}
