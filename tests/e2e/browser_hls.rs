//! hls.js in headless Chromium plays a live stream of a media node.

use std::time::Duration;

use crate::common::browser::play_hls;
use crate::common::media::{Publisher, Source, require_ffmpeg};
use crate::common::{Proc, get, wait_for};

#[test]
fn hlsjs_in_chromium_plays_the_live_stream() {
    require_ffmpeg();
    let p = Proc::start(
        "nodes:\n  - {role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", apps: [{name: live, security: {publish: open}}, {name: LiveApp, security: {publish: open}}], hls: {segment: 1s, window: 6}}\n",
    );
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/web", p.addr("s1", "rtmp")),
        Source {
            seconds: 40,
            ..Source::default()
        },
    );
    let url = format!("{}/live/streams/web.m3u8", p.http("s1"));
    wait_for("the first segments", Duration::from_secs(20), || {
        (get(&url).text().matches("#EXTINF").count() >= 2).then_some(())
    });
    let r = play_hls(&url, 5, &[]);
    assert!(r.ok, "hls.js playback failed: {}", r.json);
    assert!(r.json["currentTime"].as_f64().unwrap() >= 5.0, "{}", r.json);
    assert!(
        r.json["frames"].as_u64().unwrap() > 60,
        "frames decoded: {}",
        r.json
    );
    assert!(r.json["fatal"].is_null(), "{}", r.json);
}

/// Stream security in the browser: hls.js with a play token on the playlist URL plays (the
/// playlist hands the token on to every segment); without one it gets a 403 it can read (the
/// error carries CORS headers) and stops with a fatal manifest error.
#[test]
fn hlsjs_plays_with_a_play_token_and_is_refused_without() {
    require_ffmpeg();
    const KEY: &str = "browser-jwt-key-0123456789";
    let p = Proc::start(&format!(
        "nodes:\n  - {{role: standalone, name: s1, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", apps: [{{name: live, security: {{publish: open, play: jwt, jwt_secret: {KEY}}}}}], hls: {{segment: 1s, window: 6}}}}\n"
    ));
    let _publisher = Publisher::start(
        &format!("rtmp://{}/live/web", p.addr("s1", "rtmp")),
        Source {
            seconds: 40,
            ..Source::default()
        },
    );
    let token = crate::common::stream_token(KEY, "web", "play", 600);
    let url = format!("{}/live/streams/web.m3u8", p.http("s1"));
    let with_token = format!("{url}?token={token}");
    wait_for("the first segments", Duration::from_secs(20), || {
        (get(&with_token).text().matches("#EXTINF").count() >= 2).then_some(())
    });
    let r = play_hls(&with_token, 4, &[]);
    assert!(r.ok, "hls.js with a play token: {}", r.json);
    assert!(r.json["frames"].as_u64().unwrap() > 30, "{}", r.json);

    let r = play_hls(&url, 4, &[]);
    assert!(!r.ok, "hls.js without a token must not play: {}", r.json);
    assert!(
        r.json["fatal"]
            .as_str()
            .is_some_and(|f| f.contains("manifestLoadError")),
        "{}",
        r.json
    );
}
