//! A fact about the server's WebRTC stack that bench/webrtc/README.md's suggestions rest on,
//! kept as a test: without bandwidth estimation str0m paces nothing, so every RTP packet of a
//! frame comes out of one `poll_output` drain right after `write` (the server's session could
//! hand them to the kernel in one batch: GSO or `sendmmsg`, instead of one `sendto` each).
//!
//! Harness: a sender configured like streamfleet's WHEP sessions (ICE-lite, H.264 sendonly) and
//! a viewer configured like `webrtc-load`'s, joined in memory on a simulated clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Everything `rtc` has to say now: datagrams (delivered to `peer`), and whether it connected.
fn pump(rtc: &mut Rtc, from: SocketAddr, peer: &mut Rtc, to: SocketAddr, now: Instant) -> bool {
    let mut connected = false;
    loop {
        match rtc.poll_output().unwrap() {
            Output::Timeout(_) => return connected,
            Output::Transmit(t) => {
                let r = Receive::new(Protocol::Udp, from, to, &t.contents).unwrap();
                peer.handle_input(Input::Receive(now, r)).unwrap();
            }
            Output::Event(Event::Connected) => connected = true,
            Output::Event(_) => {}
        }
    }
}

#[test]
fn without_bwe_a_frames_packets_come_out_in_one_drain() {
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let mut now = Instant::now();
    let (server_addr, viewer_addr): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5000".parse().unwrap(),
        "127.0.0.1:6000".parse().unwrap(),
    );

    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .set_crypto_provider(crypto.clone())
        .clear_codecs();
    config.codec_config().enable_h264(true);
    let mut server = config.build(now);
    server.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());

    let mut config = RtcConfig::new()
        .set_crypto_provider(crypto)
        .set_rtp_mode(true)
        .clear_codecs();
    config.codec_config().enable_h264(true);
    let mut viewer = config.build(now);
    viewer.add_local_candidate(Candidate::host(viewer_addr, "udp").unwrap());
    let mut api = viewer.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let answer = server.sdp_api().accept_offer(offer).unwrap();
    viewer.sdp_api().accept_answer(pending, answer).unwrap();

    // ICE and DTLS on a simulated clock.
    let mut connected = false;
    for _ in 0..2000 {
        now += Duration::from_millis(1);
        viewer.handle_input(Input::Timeout(now)).unwrap();
        server.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut viewer, viewer_addr, &mut server, server_addr, now);
        connected |= pump(&mut server, server_addr, &mut viewer, viewer_addr, now);
        if connected {
            break;
        }
    }
    assert!(connected, "the pair never connected");

    // One 24 KB IDR access unit (about 20 RTP packets), as `session::write_video` writes it.
    let mut au = vec![0, 0, 0, 1, 0x65];
    au.resize(24_000, 0x88);
    let writer = server.writer(mid).unwrap();
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::H264)
        .unwrap()
        .pt();
    writer.write(pt, now, MediaTime::from_90khz(0), au).unwrap();

    // Drain as the server's session loop does: every transmit until `Output::Timeout`, then
    // the timeout.
    let mut per_cycle = Vec::new();
    for _ in 0..100 {
        let mut sent = 0;
        let timeout = loop {
            match server.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) if t.contents.len() > 1000 => sent += 1,
                _ => {}
            }
        };
        if sent > 0 {
            per_cycle.push(sent);
        }
        assert!(timeout <= now + Duration::from_millis(1000));
        now = now.max(timeout);
        server.handle_input(Input::Timeout(now)).unwrap();
    }
    assert_eq!(per_cycle.len(), 1, "packets per drain: {per_cycle:?}");
    assert!(per_cycle[0] >= 20, "packets per drain: {per_cycle:?}");
}
