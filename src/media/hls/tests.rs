//! The packager seen from its two sides: the node that decides (cuts on keyframes, slides the
//! window, marks republishes, continues the store's numbering) and the nodes that follow
//! (same names, numbers and bytes whenever they joined; renditions numbered like the source).

use super::decide::{Role, SegmentBook};
use super::*;
use crate::media::frame::VideoTrack;
use streamfleet_proto::avc::fixtures::{PPS_X264, SPS_640X360};

fn encode_video(tag: VideoTag) -> Bytes {
    let mut b = BytesMut::new();
    tag.encode(&mut b).unwrap();
    b.freeze()
}

fn info() -> StreamInfo {
    let config = DecoderConfig::from_parameter_sets(
        Bytes::from_static(SPS_640X360),
        Bytes::from_static(PPS_X264),
    )
    .unwrap();
    let mut record = BytesMut::new();
    config.encode(&mut record).unwrap();
    StreamInfo {
        video: Some(VideoTrack {
            sequence_header: encode_video(VideoTag::avc_sequence_header(record.freeze())),
            width: 640,
            height: 360,
            codec: "avc1.64001e".into(),
            frame_rate: Some(30.0),
        }),
        ..Default::default()
    }
}

/// A 30 fps frame with one slice NAL (IDR on keyframes), 4-byte length prefixes.
fn frame(n: u64) -> Frame {
    let keyframe = n.is_multiple_of(30);
    let nal: &[u8] = if keyframe {
        &[0x65, 0x88, 0x84, 0x00]
    } else {
        &[0x41, 0x9a, 0x02, 0x00]
    };
    let mut au = (nal.len() as u32).to_be_bytes().to_vec();
    au.extend_from_slice(nal);
    Frame::new(
        TrackKind::Video,
        n * 1000 / 30,
        keyframe,
        encode_video(VideoTag::avc_frame(keyframe, 0, Bytes::from(au))),
    )
}

fn config() -> HlsConfig {
    HlsConfig {
        segment: Duration::from_secs(2),
        window: 3,
        wait: Duration::from_secs(1),
        part: Some(Duration::from_millis(333)),
        max_waiting: 16,
        max_memory: 1 << 30,
    }
}

fn source(name: &str, config: &HlsConfig, first: u64) -> HlsPackager {
    HlsPackager::new(
        name,
        config,
        Role::Source(Arc::new(SegmentBook::default())),
        first,
    )
}

/// What the hub does on the node that ingests: decide, then package; returns the frame as it
/// travels on (with its decision).
fn publish(p: &mut HlsPackager, mut f: Frame) -> Frame {
    let d = p.decide(&f);
    f.segment = d.segment.map(Arc::new);
    f.part = d.part;
    p.push(&f);
    f
}

fn playlist(p: &HlsPackager) -> m3u8_rs::MediaPlaylist {
    let text = String::from_utf8(p.view().playlist.as_ref().unwrap().to_vec()).unwrap();
    m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("valid playlist")
}

#[test]
fn cuts_on_keyframes_slides_the_window_and_marks_republish() {
    let mut p = source("demo", &config(), 0);
    let views = p.subscribe();
    p.start(&info(), 1);
    for n in 0..(7 * 30) {
        publish(&mut p, frame(n));
    }
    let view = p.view();
    assert_eq!(
        view.segments.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    for (_, ts) in &view.segments {
        assert_eq!(ts.len() % 188, 0);
        assert!(
            ts.chunks(188).all(|p| p[0] == 0x47),
            "every packet starts with the sync byte"
        );
    }
    let pl = playlist(&p);
    assert_eq!(pl.segments.len(), 3);
    for s in &pl.segments {
        assert!(
            (s.duration - 2.0).abs() < 0.001,
            "cut at the first keyframe after 2s: {}",
            s.duration
        );
        assert!(s.program_date_time.is_some());
        assert!(u64::from(pl.target_duration as u32) >= s.duration.round() as u64);
    }
    assert_eq!(pl.segments[0].uri, "demo-0.ts");
    assert!(views.has_changed().unwrap());

    // The publisher leaves: the open segment (6s..7s) is published.
    assert_eq!(
        p.stop(None),
        Some(6966 + 33),
        "one frame interval after the last frame"
    );
    let v = p.view();
    assert_eq!(v.segments.back().unwrap().0, 3);
    // Republish: a new generation, timestamps from zero again, a discontinuity.
    p.start(&info(), 2);
    for n in 0..(3 * 30) {
        publish(&mut p, frame(n));
    }
    let text = String::from_utf8(p.view().playlist.as_ref().unwrap().to_vec()).unwrap();
    let pl = playlist(&p);
    assert_eq!(pl.media_sequence, 2, "window of 3 slid");
    let uris: Vec<&str> = pl.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["demo-2.ts", "demo-3.ts", "demo-4.ts"]);
    assert!(!pl.segments[1].discontinuity);
    assert!(
        pl.segments[2].discontinuity,
        "republished segment is discontinuous:\n{text}"
    );
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"));
    // Segments beyond the window stay fetchable for a while.
    assert!(p.view().segments.iter().any(|(s, _)| *s == 1));
}

#[test]
fn nothing_before_the_first_keyframe() {
    let mut p = source("x", &config(), 0);
    p.start(&info(), 1);
    for n in 1..29 {
        publish(&mut p, frame(n));
    }
    assert_eq!(p.stop(None), None);
    assert!(p.view().playlist.is_none(), "no keyframe, no segment");
}

#[test]
fn packagers_started_at_different_keyframes_cut_at_the_same_frames() {
    let wide = HlsConfig {
        window: 6,
        ..config()
    };
    let mut early = source("a", &wide, 0);
    let mut late = source("b", &wide, 0);
    early.start(&info(), 1);
    late.start(&info(), 1);
    for n in 0..(9 * 30) {
        publish(&mut early, frame(n));
        if n >= 30 {
            publish(&mut late, frame(n));
        }
    }
    let starts = |p: &HlsPackager| -> Vec<u64> {
        let mut t = 0.0;
        playlist(p)
            .segments
            .iter()
            .map(|s| {
                let start = t;
                t += s.duration;
                (start * 1000.0).round() as u64
            })
            .collect()
    };
    // early: 0-2, 2-4, 4-6, 6-8; late: 1-2, 2-4, 4-6, 6-8 (same cuts after its first).
    assert_eq!(early.view().segments.len(), 4);
    let e = starts(&early);
    let l: Vec<u64> = starts(&late).iter().map(|s| s + 1000).collect();
    assert_eq!(&e[1..], &l[1..], "aligned cuts");
}

#[test]
fn followers_serve_the_same_bytes_under_the_same_names_whenever_they_joined() {
    let mut origin = source("demo", &config(), 1_796_320_734);
    let follower = || HlsPackager::new("demo", &config(), Role::Source(Arc::default()), 7);
    let (mut early, mut late) = (follower(), follower());
    for p in [&mut origin, &mut early, &mut late] {
        p.start(&info(), 1);
    }
    for n in 0..(12 * 30) {
        let f = publish(&mut origin, frame(n));
        early.push(&f);
        // Joins mid-segment (the next decision is at 2 s): packages from there on.
        if n >= 40 {
            late.push(&f);
        }
    }
    let end = origin.stop(None);
    for p in [&mut early, &mut late] {
        p.stop(end);
    }
    for p in [&early, &late] {
        assert_eq!(
            p.view().playlist,
            origin.view().playlist,
            "identical playlists once the windows are full"
        );
        for (sequence, bytes) in &p.view().segments {
            let theirs = origin.view();
            let (_, want) = theirs.segments.iter().find(|(s, _)| s == sequence).unwrap();
            assert_eq!(bytes, want, "segment {sequence} byte for byte");
        }
    }
    let pl = playlist(&late);
    assert_eq!(pl.segments.last().unwrap().uri, "demo-1796320739.ts");
    assert_eq!(pl.media_sequence, 1_796_320_737);
    // The late one never listed the segment it joined in the middle of.
    assert!(
        late.view()
            .segments
            .iter()
            .all(|(s, _)| *s >= 1_796_320_735)
    );
}

#[test]
fn renditions_take_the_source_numbers_and_times() {
    let book = Arc::new(SegmentBook::default());
    let mut src = HlsPackager::new("s", &config(), Role::Source(book.clone()), 500);
    let mut low = HlsPackager::new("s_240p", &config(), Role::Rendition(book), 9);
    src.start(&info(), 1);
    low.start(&info(), 1);
    for n in 0..(9 * 30) {
        publish(&mut src, frame(n));
        // The rendition starts later (a transcoder warming up) and sees the same timestamps.
        if n >= 75 {
            publish(&mut low, frame(n));
        }
    }
    let (s, l) = (playlist(&src), playlist(&low));
    let numbered = |pl: &m3u8_rs::MediaPlaylist| -> Vec<(u64, Option<i64>, String)> {
        pl.segments
            .iter()
            .enumerate()
            .map(|(i, seg)| {
                (
                    pl.media_sequence + i as u64,
                    seg.program_date_time.map(|t| t.timestamp_millis()),
                    format!("{:.3}", seg.duration),
                )
            })
            .collect()
    };
    assert_eq!(numbered(&l), numbered(&s)[1..], "{s:?}\n{l:?}");
    assert_eq!(l.segments[0].uri, "s_240p-502.ts");
}

#[test]
fn numbering_continues_from_the_store_with_a_discontinuity() {
    let mut p = source("demo", &config(), 1_900_000_000);
    p.resume(HlsProgress {
        next_sequence: 1_796_320_740,
        discontinuity_sequence: 4,
    });
    p.start(&info(), 1);
    for n in 0..(5 * 30) {
        publish(&mut p, frame(n));
    }
    let pl = playlist(&p);
    assert_eq!(pl.media_sequence, 1_796_320_740);
    assert_eq!(
        pl.discontinuity_sequence, 4,
        "the tag on the first is listed"
    );
    assert!(pl.segments[0].discontinuity);
    assert!(!pl.segments[1].discontinuity);
    assert_eq!(
        p.progress(),
        HlsProgress {
            next_sequence: 1_796_320_743,
            discontinuity_sequence: 5,
        }
    );
}

/// A follower fed `frames` (as they travel from the origin).
fn follow(frames: &[Frame]) -> HlsPackager {
    let mut f = HlsPackager::new("demo", &config(), Role::Source(Arc::default()), 0);
    f.start(&info(), 1);
    for fr in frames {
        f.push(fr);
    }
    f
}

/// The origin's frames for `seconds` (2 s segments of 30 fps, keyframes every second).
fn origin_frames(seconds: u64) -> (HlsPackager, Vec<Frame>) {
    let mut origin = source("demo", &config(), 0);
    origin.start(&info(), 1);
    let frames = (0..seconds * 30)
        .map(|n| publish(&mut origin, frame(n)))
        .collect();
    (origin, frames)
}

#[test]
fn a_segment_started_again_replaces_the_partial_copy() {
    let (origin, frames) = origin_frames(10);
    // A relay subscription renewed at 3.5 s: the origin replays its open segment (2 s..) from
    // its start.
    let replay: Vec<Frame> = frames[..105].iter().chain(&frames[60..]).cloned().collect();
    let edge = follow(&replay);
    assert_eq!(edge.view().playlist, origin.view().playlist);
    let sequences: Vec<u64> = edge.view().segments.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, [0, 1, 2, 3], "no segment twice");
    for (s, bytes) in &edge.view().segments {
        let theirs = origin.view();
        assert_eq!(
            bytes,
            &theirs.segments.iter().find(|(o, _)| o == s).unwrap().1
        );
    }
}

#[test]
fn segments_numbered_again_replace_the_later_ones() {
    let (_, frames) = origin_frames(8);
    let mut edge = follow(&frames);
    assert_eq!(playlist(&edge).media_sequence, 0);
    // A new origin that could not continue exactly numbers its first segment 2 again.
    let mut other = source("demo", &config(), 0);
    other.resume(HlsProgress {
        next_sequence: 2,
        discontinuity_sequence: 0,
    });
    other.start(&info(), 1);
    for n in 0..(4 * 30) {
        edge.push(&publish(&mut other, frame(n)));
    }
    let pl = playlist(&edge);
    let uris: Vec<&str> = pl.segments.iter().map(|s| s.uri.as_str()).collect();
    // The old 2 and the old open 3 are gone; the new 3 is open.
    assert_eq!(uris, ["demo-0.ts", "demo-1.ts", "demo-2.ts"]);
    assert!(pl.segments[2].discontinuity, "the new origin's first");
    assert!(edge.view().segments.iter().all(|(s, _)| *s <= 2));
}

#[test]
fn an_incomplete_segment_is_not_served_and_the_one_before_keeps_its_length() {
    let (_, frames) = origin_frames(8);
    let mut edge = follow(&frames[..100]);
    // Frames of segment 1 (2 s..4 s) were lost on the way.
    edge.discard_open();
    for f in &frames[120..] {
        edge.push(f);
    }
    let listed: Vec<u64> = edge.view().segments.iter().map(|(s, _)| *s).collect();
    assert_eq!(listed, [0, 2], "1 never listed; 0 listed when 1 started");
    let pl = playlist(&edge);
    assert_eq!(pl.media_sequence, 2, "a gap starts the window again");
    assert_eq!(pl.segments.len(), 1);

    // A segment missed entirely: the one before ends after its last frame, not at the next.
    let mut edge = follow(&frames[..110]);
    for f in &frames[180..] {
        edge.push(f);
    }
    let seg1 = edge.view().segments.iter().any(|(s, _)| *s == 1);
    assert!(seg1);
    let text = String::from_utf8(edge.view().playlist.as_ref().unwrap().to_vec()).unwrap();
    assert!(!text.contains("#EXTINF:4."), "{text}");
}

#[test]
fn a_republished_source_does_not_lend_its_old_cuts_to_renditions() {
    let book = Arc::new(SegmentBook::default());
    let mut src = HlsPackager::new("s", &config(), Role::Source(book.clone()), 500);
    let mut low = HlsPackager::new("s_240p", &config(), Role::Rendition(book), 9);
    src.start(&info(), 1);
    low.start(&info(), 1);
    for n in 0..(6 * 30) {
        publish(&mut src, frame(n));
        publish(&mut low, frame(n));
    }
    src.stop(None);
    low.stop(None);
    // Republished: timestamps start again; the source decides anew before the rendition sees
    // the same timestamps.
    src.start(&info(), 2);
    low.start(&info(), 2);
    for n in 0..(5 * 30) {
        publish(&mut src, frame(n));
        publish(&mut low, frame(n));
    }
    let (s, l) = (playlist(&src), playlist(&low));
    assert_eq!(l.media_sequence, s.media_sequence);
    assert_eq!(l.target_duration, s.target_duration, "no 10 s segment");
    let durations = |pl: &m3u8_rs::MediaPlaylist| -> Vec<String> {
        pl.segments
            .iter()
            .map(|x| format!("{:.3}", x.duration))
            .collect()
    };
    assert_eq!(durations(&l), durations(&s));
}

#[test]
fn ll_hls_parts_follow_the_origin_and_are_the_same_bytes_everywhere() {
    let (origin, frames) = origin_frames(6);
    // An edge configured with other parts still cuts the origin's.
    let other = HlsConfig {
        part: Some(Duration::from_millis(500)),
        ..config()
    };
    let mut late = HlsPackager::new("demo", &other, Role::Source(Arc::default()), 0);
    late.start(&info(), 1);
    late.follow();
    for f in &frames[45..] {
        late.push(f);
    }
    let view = |p: &HlsPackager| p.ll_subscribe().unwrap().borrow().clone();
    let (o, l) = (view(&origin), view(&late));
    let text = o.playlist.as_ref().unwrap().render(false, &[]);
    // Segments of 2 s in parts of 333 ms at 30 fps: six parts each, the first independent.
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=0.333\n"),
        "{text}"
    );
    let parts_of_1 = text.matches("URI=\"demo-1.").count();
    assert_eq!(parts_of_1, 6, "{text}");
    assert!(
        text.contains("URI=\"demo-1.0.m4s\",INDEPENDENT=YES"),
        "{text}"
    );
    assert!(!text.contains("URI=\"demo-1.1.m4s\",INDEPENDENT"), "{text}");
    let theirs = l.playlist.as_ref().unwrap().render(false, &[]);
    assert!(
        theirs.contains("#EXT-X-PART-INF:PART-TARGET=0.333\n")
            && theirs.contains("PART-HOLD-BACK=0.999\n"),
        "{theirs}"
    );
    assert_eq!(o.init, l.init, "same initialization segment, same name");
    // Every part and segment the late one has is the origin's, byte for byte.
    assert!(!l.parts.is_empty() && !l.segments.is_empty());
    for (s, p, bytes) in &l.parts {
        let theirs = o.parts.iter().find(|(os, op, _)| os == s && op == p);
        assert_eq!(Some(bytes), theirs.map(|(.., b)| b), "part {s}.{p}");
    }
    for (s, bytes) in &l.segments {
        let theirs = o.segments.iter().find(|(os, _)| os == s);
        assert_eq!(Some(bytes), theirs.map(|(_, b)| b), "segment {s}");
    }
    // A whole segment is its parts one after the other.
    let (s, whole) = o.segments.back().unwrap();
    let joined: Vec<u8> = o
        .parts
        .iter()
        .filter(|(ps, ..)| ps == s)
        .flat_map(|(.., b)| b.iter().copied())
        .collect();
    if !joined.is_empty() {
        assert_eq!(&joined[..], &whole[..]);
    }
}

#[test]
fn a_new_follower_starts_with_the_origins_window() {
    let (mut origin, frames) = origin_frames(12);
    // The open segment starts at 10 s (frame 300): a subscriber starts there, after the copies
    // of what the origin lists before it.
    let next = frames[300].segment.as_ref().unwrap().sequence;
    let copies = origin.view().copies_before(next, usize::MAX);
    let numbers: Vec<u64> = copies.iter().map(|c| c.sequence).collect();
    assert_eq!(
        numbers,
        [2, 3, 4],
        "the window before the open segment, oldest first"
    );
    let mut edge = HlsPackager::new("demo", &config(), Role::Source(Arc::default()), 0);
    edge.follow();
    edge.start(&info(), 1);
    edge.backfill(copies.clone());
    assert_eq!(
        edge.view().playlist,
        origin.view().playlist,
        "a whole playlist before any frame"
    );
    for f in &frames[300..] {
        edge.push(f);
    }
    // Copies of what it already lists (a renewed subscription) change nothing.
    edge.backfill(copies);
    let end = origin.stop(None);
    edge.stop(end);
    assert_eq!(edge.view().playlist, origin.view().playlist);
    let theirs = origin.view();
    let sequences: Vec<u64> = edge.view().segments.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, [2, 3, 4, 5]);
    for (s, bytes) in &edge.view().segments {
        let want = &theirs.segments.iter().find(|(o, _)| o == s).unwrap().1;
        assert!(bytes == want, "segment {s}: the same bytes");
    }

    // A segment too big to copy ends the run: nothing older than it is sent.
    let view = origin.view();
    let newest = view.segments.iter().find(|(s, _)| *s == 4).unwrap().1.len();
    assert!(view.copies_before(5, newest - 1).is_empty());
    assert_eq!(view.copies_before(5, newest).last().unwrap().sequence, 4);
}

#[test]
fn a_copy_replaces_a_partial_open_segment_and_older_copies_are_ignored() {
    let (origin, frames) = origin_frames(12);
    // A follower that saw part of segment 3 (6 s..7 s) only.
    let mut edge = follow(&frames[180..210]);
    assert!(edge.view().playlist.is_none(), "nothing finished yet");
    let copies = origin.view().copies_before(5, usize::MAX);
    assert_eq!(
        copies.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    // 2 is older than the open 3: ignored; 3 replaces the partial copy; 4 follows.
    edge.backfill(copies);
    let listed: Vec<u64> = edge.view().listed.iter().map(|s| s.sequence).collect();
    assert_eq!(listed, [3, 4]);
    for (s, bytes) in &edge.view().segments {
        let theirs = origin.view();
        let want = &theirs.segments.iter().find(|(o, _)| o == s).unwrap().1;
        assert!(bytes == want, "segment {s}: the same bytes");
    }
}

/// A 30 fps frame of `size` bytes of slice data, a keyframe every `gop` frames.
fn sized_frame(n: u64, size: usize, gop: u64) -> Frame {
    let keyframe = n.is_multiple_of(gop);
    let mut nal = vec![0u8; size.max(4)];
    nal[0] = if keyframe { 0x65 } else { 0x41 };
    let mut au = (nal.len() as u32).to_be_bytes().to_vec();
    au.extend_from_slice(&nal);
    Frame::new(
        TrackKind::Video,
        n * 1000 / 30,
        keyframe,
        encode_video(VideoTag::avc_frame(keyframe, 0, Bytes::from(au))),
    )
}

#[test]
fn a_segment_is_bounded_by_the_streams_own_bit_rate_but_long_gops_are_not_cut() {
    let mut p = source("demo", &config(), 0);
    p.start(&info(), 1);
    // 10 s GOPs (5 target durations) of 4 KB frames, about 1 Mbit/s: cut on keyframes only.
    let mut n = 0;
    while n < 3 * 300 {
        publish(&mut p, sized_frame(n, 4_000, 300));
        n += 1;
    }
    let pl = playlist(&p);
    assert_eq!(pl.segments.len(), 2, "two 10 s segments listed");
    assert!(pl.segments.iter().all(|s| (s.duration - 10.0).abs() < 0.01));
    let listed_max = p
        .view()
        .segments
        .iter()
        .map(|(_, b)| b.len())
        .max()
        .unwrap();

    // Then a burst of 256 KB frames without a keyframe: cut once the open segment passes 4
    // target durations (10 s now) of the highest listed rate, not at 64 MiB.
    let bound = 4 * 10 * 1_000_000 / 8;
    for _ in 0..200 {
        publish(&mut p, sized_frame(n, 256_000, 1_000_000));
        n += 1;
    }
    let view = p.view();
    let biggest = view.segments.iter().map(|(_, b)| b.len()).max().unwrap();
    assert!(
        biggest > listed_max && biggest < bound * 12 / 10 + 300_000,
        "the burst's segments are cut near {bound} bytes: biggest {biggest}"
    );
    assert!(
        playlist(&p).segments.len() >= 3,
        "the burst was cut into listed segments"
    );
}

#[test]
fn over_the_nodes_budget_packagers_drop_extra_segments_and_the_node_is_full() {
    use super::memory::HlsMemory;
    let metrics = prometheus_client::metrics::gauge::Gauge::default();
    let memory = HlsMemory::new(200_000, metrics.clone());
    let mut a = source("a", &config(), 0).with_memory(memory.clone());
    a.start(&info(), 1);
    // 3 KB frames, 2 s segments of about 180 KB (TS) plus the LL-HLS copy.
    for n in 0..(7 * 30) {
        publish(&mut a, sized_frame(n, 3_000, 30));
    }
    let view = a.view();
    let listed: Vec<u64> = view.listed.iter().map(|s| s.sequence).collect();
    let served: Vec<u64> = view.segments.iter().map(|(s, _)| *s).collect();
    assert!(memory.is_full(), "over the budget: {}", memory.used());
    assert_eq!(
        served, listed,
        "no extra segments kept while over the budget"
    );
    assert_eq!(metrics.get() as usize, memory.used());
    let ll = a.ll.as_ref().unwrap().view();
    let ll_listed = ll
        .playlist
        .as_ref()
        .unwrap()
        .segments()
        .next()
        .unwrap()
        .sequence;
    assert!(ll.segments.iter().all(|(s, _)| *s >= ll_listed));

    // The stream goes away: its bytes are no longer counted.
    drop(a);
    assert_eq!(memory.used(), 0);
    assert!(!memory.is_full());
}
