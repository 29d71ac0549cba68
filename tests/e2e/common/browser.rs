//! Headless Chromium with hls.js (tests/browser/play.mjs), as a real browser player.

use std::path::PathBuf;
use std::process::Command;

/// What the browser player reported.
pub struct BrowserResult {
    /// The JSON line `play.mjs` printed.
    pub json: serde_json::Value,
    /// Its exit status was success.
    pub ok: bool,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Plays `url` in Chromium with hls.js until `seconds` of media played (extra args are passed
/// to play.mjs, e.g. `--switch-levels`).
pub fn play_hls(url: &str, seconds: u32, extra: &[&str]) -> BrowserResult {
    assert!(
        dir().join("node_modules/hls.js").exists()
            && dir().join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let out = Command::new("timeout")
        .args(["-k", "5", "150", "node"])
        .arg(dir().join("play.mjs"))
        .arg(url)
        .args(["--seconds", &seconds.to_string(), "--timeout", "120"])
        .args(extra)
        .output()
        .expect("node (apt install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "play.mjs printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    BrowserResult {
        json,
        ok: out.status.success(),
    }
}

/// Opens `base/#/cluster` and waits until the console lists every node of `names` alive.
pub fn console_lists(base: &str, names: &[&str]) -> BrowserResult {
    let out = Command::new("timeout")
        .args(["-k", "5", "90", "node"])
        .arg(dir().join("console.mjs"))
        .arg(base)
        .arg(names.join(","))
        .args(["--timeout", "60"])
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
            panic!(
                "console.mjs printed no JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    BrowserResult {
        json,
        ok: out.status.success(),
    }
}

/// Plays a WHEP URL in Chromium with a plain RTCPeerConnection (tests/browser/whep.mjs) until
/// `frames` video frames were decoded (extra args are passed on, e.g. `--token`, or `--audio`
/// to also wait for decoded audio with energy).
pub fn play_whep(url: &str, frames: u32, extra: &[&str]) -> BrowserResult {
    assert!(
        dir().join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let out = Command::new("timeout")
        .args(["-k", "5", "120", "node"])
        .arg(dir().join("whep.mjs"))
        .arg(url)
        .args(["--frames", &frames.to_string(), "--timeout", "90"])
        .args(extra)
        .output()
        .expect("node (apt install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "whep.mjs printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    BrowserResult {
        json,
        ok: out.status.success(),
    }
}

/// Plays `stream_id` in Chromium with Ant Media's own client (`@antmedia/webrtc_adaptor`, see
/// tests/browser/antmedia_play.mjs) over the WebSocket signalling at `ws_url` until `frames`
/// video frames were decoded, then stops and plays again (extra args are passed on, e.g.
/// `--missing ID`, `--token JWT`).
pub fn play_antmedia(ws_url: &str, stream_id: &str, frames: u32, extra: &[&str]) -> BrowserResult {
    assert!(
        dir().join("node_modules/@antmedia/webrtc_adaptor").exists()
            && dir()
                .join("node_modules/@mediapipe/selfie_segmentation")
                .exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let out = Command::new("timeout")
        .args(["-k", "5", "120", "node"])
        .arg(dir().join("antmedia_play.mjs"))
        .args([ws_url, stream_id])
        .args(["--frames", &frames.to_string(), "--timeout", "90"])
        .args(extra)
        .output()
        .expect("node (apt install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "antmedia_play.mjs printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    BrowserResult {
        json,
        ok: out.status.success(),
    }
}
