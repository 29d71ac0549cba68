//! SDP for WebRTC sessions: the answer to a viewer's offer (WHEP) and the server's own offer
//! (Ant Media's signalling), with the codecs both use, and the checks on offers and answers
//! str0m does not make (H.264 present, video answered, formats on rejected m-lines).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::crypto::CryptoProvider;
use str0m::format::CodecConfig;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use super::{WebRtcError, audio};

/// H.264 profiles answered besides the stream's own (payload type, RTX payload type,
/// profile-level-id): constrained baseline, baseline, main, high. 111 stays free: it is Opus.
const FALLBACK_PROFILES: [(u8, u8, u32); 4] = [
    (106, 107, 0x42e01f),
    (108, 109, 0x42001f),
    (114, 115, 0x4d001f),
    (112, 113, 0x64001f),
];

/// How often a session's counters (NACKs, PLIs) are read.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// The bandwidth estimate a session starts from (ABR): high, because str0m paces media at the
/// estimate and the start cache goes out at once; the estimate falls fast when the path is
/// slower.
const INITIAL_ESTIMATE: Bitrate = Bitrate::mbps(10);

/// A session's `Rtc` (ICE-lite, one host candidate, H.264, and Opus when `opus`; bandwidth
/// estimation when `abr`) and its SDP answer to `offer`, for a stream of H.264 `profile` (a
/// `profile-level-id`).
pub(super) fn answer(
    offer: SdpOffer,
    profile: u32,
    opus: bool,
    abr: bool,
    creds: IceCreds,
    candidate: SocketAddr,
    crypto: Arc<CryptoProvider>,
) -> Result<(Rtc, String), WebRtcError> {
    let offer_sdp = offer.to_sdp_string();
    let mut rtc_config = RtcConfig::new()
        .set_ice_lite(true)
        .set_crypto_provider(crypto)
        .set_local_ice_credentials(creds)
        // Sender reports map RTP to wall-clock time; browsers synchronise audio with video
        // only once they have them for both (str0m's default for audio is every 5 s).
        .set_rtcp_report_interval_audio(Duration::from_secs(1))
        .set_stats_interval(Some(STATS_INTERVAL))
        .enable_bwe(abr.then_some(INITIAL_ESTIMATE))
        .clear_codecs();
    // (Debian's Chromium offers no High profile, yet decodes it.)
    let codecs = rtc_config.codec_config();
    video_codecs(codecs, profile);
    // Opus (payload type 111, as browsers offer it) for streams with audio; without it an
    // offered audio m-line is rejected.
    codecs.enable_opus(opus, false);
    let mut rtc = rtc_config.build(Instant::now());
    let host = Candidate::host(candidate, "udp").map_err(|_| WebRtcError::Candidate(candidate))?;
    rtc.add_local_candidate(host);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(WebRtcError::Answer)?;
    let sdp = with_rejected_formats(&offer_sdp, &answer.to_sdp_string());
    let sdp = audio::one_stream(&sdp);
    if !answers_video(&sdp) {
        return Err(WebRtcError::NoH264(format!("{profile:06x}")));
    }
    Ok((rtc, sdp))
}

/// A publisher's `Rtc` (ICE-lite, one host candidate, receiving H.264 and Opus, NACK and PLI
/// feedback on the video) and its SDP answer to the publisher's offer.
pub(super) fn publisher_answer(
    offer: SdpOffer,
    creds: IceCreds,
    candidate: SocketAddr,
    crypto: Arc<CryptoProvider>,
) -> Result<(Rtc, String), WebRtcError> {
    let offer_sdp = offer.to_sdp_string();
    let mut rtc_config = RtcConfig::new()
        .set_ice_lite(true)
        .set_crypto_provider(crypto)
        .set_local_ice_credentials(creds)
        .set_stats_interval(Some(STATS_INTERVAL))
        .clear_codecs();
    let codecs = rtc_config.codec_config();
    // Constrained baseline first: what browsers encode in hardware and software alike.
    video_codecs(codecs, 0x42e01f);
    codecs.enable_opus(true, false);
    let mut rtc = rtc_config.build(Instant::now());
    let host = Candidate::host(candidate, "udp").map_err(|_| WebRtcError::Candidate(candidate))?;
    rtc.add_local_candidate(host);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(WebRtcError::Answer)?;
    let sdp = receive_only(&with_rejected_formats(&offer_sdp, &answer.to_sdp_string()));
    if !answers_video(&sdp) {
        return Err(WebRtcError::PublishNoH264);
    }
    Ok((rtc, sdp))
}

/// What [`server_offer`] made.
pub(super) struct MadeOffer {
    /// The session's state machine, waiting for the answer.
    pub(super) rtc: Rtc,
    /// What str0m needs to accept the answer.
    pub(super) pending: SdpPendingOffer,
    /// The video m-line.
    pub(super) video: Mid,
    /// The audio m-line (Opus), for streams with audio.
    pub(super) audio: Option<Mid>,
    /// The offer.
    pub(super) sdp: String,
    /// mid -> track id.
    pub(super) id_mapping: Vec<(String, String)>,
    /// The host candidate, as in the SDP (without `a=candidate:`).
    pub(super) candidate: String,
}

/// A session's `Rtc` (ICE-lite, one host candidate) with a send-only H.264 video m-line
/// offered, for a stream of H.264 `profile`, and a send-only Opus m-line when `opus` (the
/// stream has audio); `track` names its media in the SDP.
pub(super) fn server_offer(
    profile: u32,
    opus: bool,
    abr: bool,
    creds: IceCreds,
    candidate: SocketAddr,
    crypto: Arc<CryptoProvider>,
    track: &str,
) -> Result<MadeOffer, WebRtcError> {
    let mut rtc_config = RtcConfig::new()
        .set_ice_lite(true)
        .set_crypto_provider(crypto)
        .set_local_ice_credentials(creds)
        .set_rtcp_report_interval_audio(Duration::from_secs(1))
        .set_stats_interval(Some(STATS_INTERVAL))
        .enable_bwe(abr.then_some(INITIAL_ESTIMATE))
        .clear_codecs();
    video_codecs(rtc_config.codec_config(), profile);
    rtc_config.codec_config().enable_opus(opus, false);
    let mut rtc = rtc_config.build(Instant::now());
    let host = Candidate::host(candidate, "udp").map_err(|_| WebRtcError::Candidate(candidate))?;
    let candidate_sdp = host.to_sdp_string();
    rtc.add_local_candidate(host);
    let mut api = rtc.sdp_api();
    let stream = Some(track.to_owned());
    let video = api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        stream.clone(),
        Some(format!("{track}-video")),
        None,
    );
    let mut id_mapping = vec![(video.to_string(), format!("{track}-video"))];
    // Audio in the same media stream as the video, so that browsers synchronise them.
    let audio = opus.then(|| {
        let mid = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            stream,
            Some(format!("{track}-audio")),
            None,
        );
        id_mapping.push((mid.to_string(), format!("{track}-audio")));
        mid
    });
    let (offer, pending) = api.apply().ok_or(WebRtcError::NoOffer)?;
    Ok(MadeOffer {
        rtc,
        pending,
        video,
        audio,
        sdp: offer.to_sdp_string(),
        id_mapping,
        candidate: candidate_sdp.trim_start_matches("candidate:").to_owned(),
    })
}

/// The H.264 payload types of an offer: the SPS's own profile first (browsers decode any level
/// of it with level-asymmetry-allowed), the common profiles after it for browsers that support
/// fewer (the session prefers the SPS's profile when the answer has it).
fn video_codecs(codecs: &mut CodecConfig, profile: u32) {
    codecs.add_h264(102.into(), Some(103.into()), true, profile);
    for (pt, rtx, fallback) in FALLBACK_PROFILES {
        if fallback >> 16 != profile >> 16 {
            codecs.add_h264(pt.into(), Some(rtx.into()), true, fallback);
        }
    }
}

/// Whether an SDP offer has a video m-line with H.264 at 90 kHz.
pub(super) fn offers_h264(sdp: &str) -> bool {
    let mut video = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            video = m.starts_with("video ");
        } else if video
            && line.starts_with("a=rtpmap:")
            && line.to_ascii_uppercase().contains(" H264/90000")
        {
            return true;
        }
    }
    false
}

/// A publisher's answer receives only: a `sendrecv` offer (a browser's `addTrack`, as Ant Media's
/// adaptor makes it) is answered `recvonly` (RFC 3264 6.1), so the browser expects no media
/// back (no remote track appears on its side). The node never sends on a publisher's session.
fn receive_only(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    for line in answer.split_inclusive('\n') {
        if line.trim_end() == "a=sendrecv" {
            out.push_str(&line.replacen("a=sendrecv", "a=recvonly", 1));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The answer with the offer's first format on each rejected m-line that has none (str0m
/// answers a refused audio section `m=audio 0 UDP/TLS/RTP/SAVPF` with an empty format list,
/// which browsers refuse to parse; RFC 3264 6 wants at least one format there).
fn with_rejected_formats(offer: &str, answer: &str) -> String {
    let offered: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("m="))
        .map(|m| m.split_whitespace().nth(3).unwrap_or("0"))
        .collect();
    let mut index = 0;
    let mut out = String::with_capacity(answer.len() + 16);
    for line in answer.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        if let Some(m) = content.strip_prefix("m=") {
            let fields: Vec<&str> = m.split_whitespace().collect();
            if fields.len() == 3 && fields[1] == "0" {
                let format = offered.get(index).copied().unwrap_or("0");
                out.push_str(&format!("m={} {format}\r\n", fields.join(" ")));
                index += 1;
                continue;
            }
            index += 1;
        }
        out.push_str(line);
    }
    out
}

/// Whether an SDP answer sends video (a video m-line with a port and a codec).
pub(super) fn answers_video(sdp: &str) -> bool {
    let mut video = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            video = m.starts_with("video ") && !m.starts_with("video 0 ");
        } else if video && line.starts_with("a=rtpmap:") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::webrtc::random_token;

    #[test]
    fn finds_h264_in_the_video_section_only() {
        let with = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                    m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:96 VP8/90000\r\n\
                    a=rtpmap:102 H264/90000\r\n";
        assert!(offers_h264(with));
        let vp8 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(!offers_h264(vp8));
        let audio_only = "v=0\r\nm=audio 9 RTP/AVP 102\r\na=rtpmap:102 H264/90000\r\n";
        assert!(!offers_h264(audio_only));
    }

    #[test]
    fn a_rejected_section_keeps_a_format() {
        let offer =
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\n";
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\nm=audio 0 UDP/TLS/RTP/SAVPF \r\na=mid:1\r\n";
        assert_eq!(
            with_rejected_formats(offer, answer),
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"
        );
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_token(16));
    }

    #[test]
    fn a_publishers_answer_receives_only() {
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=x:a=sendrecv\r\n";
        assert_eq!(
            receive_only(answer),
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=x:a=sendrecv\r\n"
        );
    }
}
