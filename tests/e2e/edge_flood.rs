//! A flood of playlist requests for made-up stream names on an edge (each one would make the
//! edge look the stream up in the cluster store): the edge answers the excess with 503 and
//! `Retry-After` without asking the store, counts it in `/metrics`, and goes on serving a real
//! stream meanwhile.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::{Proc, get, wait_for};

#[test]
fn a_flood_of_unknown_stream_names_is_refused_without_reaching_the_store() {
    require_ffmpeg();
    let p = Proc::start(
        r#"
cluster: {heartbeat: 300ms, node_timeout: 3s}
shutdown_grace: 1s
nodes:
  - role: origin
    name: o1
    rtmp: "127.0.0.1:0"
    http: "127.0.0.1:0"
    relay: "127.0.0.1:0"
    apps: [{name: live, security: {publish: open}}]
    hls: {segment: 1s, window: 6}
  - role: edge
    name: e1
    http: "127.0.0.1:0"
    maxconn: 5000
    apps: [live]
    hls: {segment: 1s, window: 6, wait: 2s}
"#,
    );
    let edge = p.http("e1");
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/real", p.addr("o1", "rtmp")),
        Source {
            seconds: 60,
            ..Source::default()
        },
    );
    let real = format!("{edge}/live/streams/real.m3u8");
    wait_for(
        "the real stream on the edge",
        Duration::from_secs(20),
        || (get(&real).status == 200).then_some(()),
    );

    // 800 requests for different made-up names at the same moment.
    const FLOOD: usize = 800;
    let barrier = Arc::new(Barrier::new(FLOOD));
    let threads: Vec<_> = (0..FLOOD)
        .map(|i| {
            let barrier = barrier.clone();
            let url = format!("{edge}/live/streams/made-up-{i}.m3u8");
            std::thread::spawn(move || {
                barrier.wait();
                let r = get(&url);
                (r.status, r.header("retry-after").map(str::to_owned))
            })
        })
        .collect();
    // The real stream is served during the flood.
    assert_eq!(get(&real).status, 200);
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let refused = answers.iter().filter(|(s, _)| *s == 503).count();
    let not_found = answers.iter().filter(|(s, _)| *s == 404).count();
    assert_eq!(refused + not_found, FLOOD, "only 404 and 503: {answers:?}");
    assert!(refused > 0, "the excess is refused");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, retry)| retry.as_deref() == Some("1")),
        "503 says when to retry"
    );
    let metrics = get(&format!("{edge}/metrics")).text();
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("streamfleet_relay_lookups_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(counted as usize, refused, "{metrics}");
    assert_eq!(get(&real).status, 200, "and after it");
}
