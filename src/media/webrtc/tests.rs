//! A socket-free pair: a str0m client (full ICE, like a browser) and a server session built by
//! [`answer`], exchanging datagrams in memory on a virtual clock, until the client receives the
//! H.264 access unit the server wrote from an FLV frame body.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc};

use super::h264;
use super::sdp::answer;
use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::avc::fixtures::{PPS_X264, SPS_640X360};

const SERVER: &str = "10.0.0.1:5000";
const CLIENT: &str = "10.0.0.2:6000";

/// What one side sent: (source, destination, bytes).
type Wire = VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>;

/// Polls `rtc` until its timeout; returns its events, queues its datagrams on `wire`.
fn drain(rtc: &mut Rtc, wire: &mut Wire) -> (Instant, Vec<Event>) {
    let mut events = Vec::new();
    loop {
        match rtc.poll_output().unwrap() {
            Output::Timeout(t) => return (t, events),
            Output::Transmit(t) => wire.push_back((t.source, t.destination, t.contents.to_vec())),
            Output::Event(e) => events.push(e),
        }
    }
}

fn deliver(rtc: &mut Rtc, wire: &mut Wire, now: Instant) {
    while let Some((source, destination, bytes)) = wire.pop_front() {
        let r = Receive::new(Protocol::Udp, source, destination, &bytes).unwrap();
        rtc.handle_input(Input::Receive(now, r)).unwrap();
    }
}

/// Runs the two peers on a virtual clock until the client receives media: once connected, the
/// server writes `annexb` on its H.264 payload type, on `mid` (else the video m-line it saw).
fn exchange_until_media(
    server: &mut Rtc,
    client: &mut Rtc,
    mut now: Instant,
    mut mid: Option<Mid>,
    annexb: &[u8],
) -> MediaData {
    let (mut to_server, mut to_client) = (Wire::new(), Wire::new());
    let (mut connected, mut written) = (false, false);
    let deadline = now + Duration::from_secs(30);
    loop {
        assert!(now < deadline, "no media within 30 s of virtual time");
        let (t_server, events) = drain(server, &mut to_client);
        for e in events {
            match e {
                Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                    mid.get_or_insert(m.mid);
                }
                Event::Connected => connected = true,
                _ => {}
            }
        }
        if connected && !written {
            let mid = mid.expect("the server saw the video m-line");
            let writer = server.writer(mid).unwrap();
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::H264)
                .unwrap()
                .pt();
            writer
                .write(pt, now, MediaTime::from_90khz(90_000), annexb.to_vec())
                .unwrap();
            written = true;
            continue;
        }
        let (t_client, events) = drain(client, &mut to_server);
        if let Some(data) = events.into_iter().find_map(|e| match e {
            Event::MediaData(d) => Some(d),
            _ => None,
        }) {
            return data;
        }
        if to_server.is_empty() && to_client.is_empty() {
            now = now.max(t_server.min(t_client));
            server.handle_input(Input::Timeout(now)).unwrap();
            client.handle_input(Input::Timeout(now)).unwrap();
        } else {
            now += Duration::from_millis(1);
            deliver(server, &mut to_server, now);
            deliver(client, &mut to_client, now);
        }
    }
}

#[test]
fn a_browser_like_client_receives_the_streams_h264() {
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let now = Instant::now();
    // The client: recvonly video with str0m's default codecs (H.264 profiles and others).
    let mut client = Rtc::builder()
        .set_crypto_provider(crypto.clone())
        .build(now);
    client.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();

    let config = DecoderConfig::from_parameter_sets(
        Bytes::from_static(SPS_640X360),
        Bytes::from_static(PPS_X264),
    )
    .unwrap();
    let creds = IceCreds {
        ufrag: "srvufrag".into(),
        pass: "server-password-0123456789".into(),
    };
    let (mut server, sdp) = answer(
        offer,
        h264::profile_level_id(&config),
        false,
        true,
        creds,
        SERVER.parse().unwrap(),
        crypto,
    )
    .unwrap();
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    assert!(sdp.contains("a=candidate:"), "{sdp}");
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&sdp).unwrap())
        .unwrap();

    // One IDR access unit, as a hub carries it (FLV AVC NALU tag body).
    let idr = [0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
    let mut body = vec![0x17, 1, 0, 0, 0];
    body.extend_from_slice(&(idr.len() as u32).to_be_bytes());
    body.extend_from_slice(&idr);
    let au = h264::access_unit(&Bytes::from(body), 1000, true, &config).unwrap();

    let received = exchange_until_media(&mut server, &mut client, now, None, &au.annexb);
    assert_eq!(received.params.spec().codec, Codec::H264);
    assert_eq!(received.params.spec().format.packetization_mode, Some(1));
    // The client got the IDR with the parameter sets before it (start codes may differ).
    let data = &received.data[..];
    let find = |needle: &[u8]| data.windows(needle.len()).position(|w| w == needle);
    let (sps, pps, slice) = (find(SPS_640X360), find(PPS_X264), find(&idr));
    assert!(
        sps.is_some() && sps < pps && pps < slice,
        "{sps:?} {pps:?} {slice:?}: {data:02x?}"
    );
}

/// The server-offer mode (Ant Media's signalling): the server offers send-only H.264, a
/// browser-like client answers, and the client receives what the server writes.
#[test]
fn a_client_answering_the_servers_offer_receives_h264() {
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let now = Instant::now();
    let config = DecoderConfig::from_parameter_sets(
        Bytes::from_static(SPS_640X360),
        Bytes::from_static(PPS_X264),
    )
    .unwrap();
    let creds = IceCreds {
        ufrag: "srvufrag".into(),
        pass: "server-password-0123456789".into(),
    };
    let made = super::sdp::server_offer(
        h264::profile_level_id(&config),
        false,
        true,
        creds,
        SERVER.parse().unwrap(),
        crypto.clone(),
        "live/cam",
    )
    .unwrap();
    assert!(made.sdp.contains("a=ice-lite"), "{}", made.sdp);
    assert!(made.sdp.contains("a=sendonly"), "{}", made.sdp);
    assert!(
        made.sdp
            .contains(&format!("a=candidate:{}", made.candidate)),
        "{}",
        made.sdp
    );
    assert_eq!(
        made.id_mapping,
        [(made.video.to_string(), "live/cam-video".into())]
    );
    let mut server = made.rtc;
    // str0m announces no MediaAdded for the offerer's own m-lines: the session is given it.
    let server_mid = made.video;

    let mut client = Rtc::builder()
        .set_crypto_provider(crypto.clone())
        .build(now);
    client.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    let answer = client
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&made.sdp).unwrap())
        .unwrap();
    // The adaptor's stereo rewrite, undone before str0m reads the answer.
    let answer = super::signal::normalized_fmtp(&answer.to_sdp_string());
    server
        .sdp_api()
        .accept_answer(made.pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let idr = [0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
    let mut body = vec![0x17, 1, 0, 0, 0];
    body.extend_from_slice(&(idr.len() as u32).to_be_bytes());
    body.extend_from_slice(&idr);
    let au = h264::access_unit(&Bytes::from(body), 1000, true, &config).unwrap();

    let received =
        exchange_until_media(&mut server, &mut client, now, Some(server_mid), &au.annexb);
    assert_eq!(received.params.spec().codec, Codec::H264);
    let data = &received.data[..];
    assert!(data.windows(idr.len()).any(|w| w == idr), "{data:02x?}");
}
