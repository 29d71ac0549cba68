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

/// `node tests/browser/SCRIPT` under `timeout -k 5 LIMIT` (a browser that hangs is killed).
fn node(limit_secs: u32, script: &str) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &limit_secs.to_string(), "node"])
        .arg(dir().join(script));
    cmd
}

/// Runs a browser script and reads the JSON line it prints last.
fn run_node(mut cmd: Command, script: &str) -> BrowserResult {
    let out = cmd.output().expect("node (apt install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    BrowserResult {
        json,
        ok: out.status.success(),
    }
}

/// Plays `url` in Chromium with hls.js until `seconds` of media played (extra args are passed
/// to play.mjs, e.g. `--switch-levels`).
pub fn play_hls(url: &str, seconds: u32, extra: &[&str]) -> BrowserResult {
    assert!(
        dir().join("node_modules/hls.js").exists()
            && dir().join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let mut cmd = node(150, "play.mjs");
    cmd.arg(url)
        .args(["--seconds", &seconds.to_string(), "--timeout", "120"])
        .args(extra);
    run_node(cmd, "play.mjs")
}

/// Opens `base/#/cluster` and waits until the console lists every node of `names` alive.
pub fn console_lists(base: &str, names: &[&str]) -> BrowserResult {
    let mut cmd = node(90, "console.mjs");
    cmd.arg(base).arg(names.join(",")).args(["--timeout", "60"]);
    run_node(cmd, "console.mjs")
}

/// Plays a WHEP URL in Chromium with a plain RTCPeerConnection (tests/browser/whep.mjs) until
/// `frames` video frames were decoded (extra args are passed on, e.g. `--token`, or `--audio`
/// to also wait for decoded audio with energy).
pub fn play_whep(url: &str, frames: u32, extra: &[&str]) -> BrowserResult {
    assert!(
        dir().join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let mut cmd = node(120, "whep.mjs");
    cmd.arg(url)
        .args(["--frames", &frames.to_string(), "--timeout", "90"])
        .args(extra);
    run_node(cmd, "whep.mjs")
}

/// Plays `stream_id` in Chromium with Ant Media's own client (`@antmedia/webrtc_adaptor`, see
/// tests/browser/antmedia_play.mjs) over the WebSocket signalling at `ws_url` until `frames`
/// video frames were decoded, then stops and plays again (extra args are passed on, e.g.
/// `--missing ID`, `--token JWT`).
pub fn play_antmedia(ws_url: &str, stream_id: &str, frames: u32, extra: &[&str]) -> BrowserResult {
    play_antmedia_in(None, ws_url, stream_id, frames, extra)
}

/// [`play_antmedia`] with the browser in network namespace `netns` (`ip netns exec`), when given.
pub fn play_antmedia_in(
    netns: Option<&str>,
    ws_url: &str,
    stream_id: &str,
    frames: u32,
    extra: &[&str],
) -> BrowserResult {
    assert!(
        dir().join("node_modules/@antmedia/webrtc_adaptor").exists()
            && dir()
                .join("node_modules/@mediapipe/selfie_segmentation")
                .exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let mut cmd = match netns {
        None => node(120, "antmedia_play.mjs"),
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "timeout", "-k", "5", "120", "node"])
                .arg(dir().join("antmedia_play.mjs"));
            cmd
        }
    };
    cmd.args([ws_url, stream_id])
        .args(["--frames", &frames.to_string(), "--timeout", "90"])
        .args(extra);
    run_node(cmd, "antmedia_play.mjs")
}

/// A browser script running in the background.
pub struct BrowserRun {
    child: std::process::Child,
    script: &'static str,
}

impl BrowserRun {
    /// Waits for it to end and reads the JSON line it printed last.
    pub fn finish(self) -> BrowserResult {
        let out = self.child.wait_with_output().expect("node ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let json = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{} printed no JSON ({e}): {stdout}\n{}",
                self.script,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        BrowserResult {
            json,
            ok: out.status.success(),
        }
    }
}

/// Starts publishing Chromium's fake camera and microphone to a WHIP URL with a plain
/// RTCPeerConnection (tests/browser/whip.mjs) for `seconds` once connected, then DELETE (extra
/// args are passed on, e.g. `--token`, `--no-delete`).
pub fn publish_whip(url: &str, seconds: u32, extra: &[&str]) -> BrowserRun {
    assert!(
        dir().join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let mut cmd = node(seconds + 120, "whip.mjs");
    cmd.arg(url)
        .args(["--seconds", &seconds.to_string(), "--timeout", "90"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    BrowserRun {
        child: cmd.spawn().expect("node (apt install nodejs)"),
        script: "whip.mjs",
    }
}

/// Starts publishing Chromium's fake camera and microphone as `stream_id` with Ant Media's
/// `@antmedia/webrtc_adaptor` over its WebSocket signalling (tests/browser/antmedia_publish.mjs)
/// for `seconds` once `publish_started`, then `stop` (extra args are passed on, e.g. `--token`).
pub fn publish_antmedia(ws_url: &str, stream_id: &str, seconds: u32, extra: &[&str]) -> BrowserRun {
    assert!(
        dir().join("node_modules/@antmedia/webrtc_adaptor").exists()
            && dir()
                .join("node_modules/@mediapipe/selfie_segmentation")
                .exists(),
        "browser test dependencies missing: run `.ci/deps test` (npm install in tests/browser)"
    );
    let mut cmd = node(seconds + 120, "antmedia_publish.mjs");
    cmd.args([ws_url, stream_id])
        .args(["--seconds", &seconds.to_string(), "--timeout", "90"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    BrowserRun {
        child: cmd.spawn().expect("node (apt install nodejs)"),
        script: "antmedia_publish.mjs",
    }
}
