//! Real media clients for end-to-end tests: ffmpeg publishing a synthetic H.264 + AAC stream,
//! ffprobe counting what a player receives. Every reader runs under `timeout -k` with
//! `-rw_timeout`, because a reader of a live URL can hang after the publisher stops.

use std::process::{Child, Command, Stdio};

/// An ffmpeg process publishing a test pattern with a tone.
pub struct Publisher {
    child: Child,
}

/// What to publish.
#[derive(Clone, Copy)]
pub struct Source {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    /// Seconds.
    pub seconds: u32,
    /// x264 with 2 B-frames (the default is none: `-tune zerolatency`).
    pub bframes: bool,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            width: 640,
            height: 360,
            fps: 30,
            gop: 30,
            seconds: 10,
            bframes: false,
        }
    }
}

impl Publisher {
    /// Starts publishing `source` to `url` in real time.
    pub fn start(url: &str, source: Source) -> Publisher {
        Publisher::start_with_audio(url, source, true)
    }

    /// Starts publishing `source` to `url` in real time, with the tone or without audio.
    pub fn start_with_audio(url: &str, source: Source, audio: bool) -> Publisher {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size={}x{}:rate={}",
                source.width, source.height, source.fps
            ));
        if audio {
            cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
        }
        let child = cmd
            .args(["-t", &source.seconds.to_string()])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ])
            .args(if source.bframes {
                ["-bf", "2"]
            } else {
                ["-tune", "zerolatency"]
            })
            .args([
                "-g",
                &source.gop.to_string(),
                "-keyint_min",
                &source.gop.to_string(),
                "-sc_threshold",
                "0",
            ])
            .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv"])
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg (apt install ffmpeg)");
        Publisher { child }
    }

    /// Waits for ffmpeg to exit; returns whether it succeeded and what it printed.
    pub fn wait(mut self) -> (bool, String) {
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().expect("true"))
            .wait_with_output()
            .expect("ffmpeg output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Whether ffmpeg is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Stops publishing now (like a publisher that disconnects).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A player (ffmpeg) reading a live URL in the background: `seconds` of video, decoded and
/// thrown away; it rides out a pause of up to 20 s in the stream (a failover).
pub struct LiveReader(std::thread::JoinHandle<std::process::Output>);

/// What a [`LiveReader`] got.
pub struct ReadResult {
    /// It read to the end.
    pub ok: bool,
    /// Video frames decoded.
    pub frames: u64,
    /// What it printed on stderr.
    pub stderr: String,
}

impl LiveReader {
    /// Starts reading `url`.
    pub fn start(url: &str, seconds: u32) -> LiveReader {
        let url = url.to_owned();
        LiveReader(std::thread::spawn(move || {
            Command::new("timeout")
                .args(["-k", "5", &(seconds + 60).to_string()])
                .args(["ffmpeg", "-hide_banner", "-loglevel", "error"])
                .args(["-rw_timeout", "20000000", "-i", &url])
                .args(["-t", &seconds.to_string(), "-map", "0:v", "-f", "null", "-"])
                .args(["-progress", "pipe:1"])
                .output()
                .expect("ffmpeg")
        }))
    }

    /// Waits for it to finish.
    pub fn finish(self) -> ReadResult {
        let out = self.0.join().expect("reader thread");
        let frames = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("frame="))
            .and_then(|f| f.trim().parse().ok())
            .unwrap_or(0);
        ReadResult {
            ok: out.status.success(),
            frames,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// One stream as ffprobe counted it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedStream {
    /// `video` or `audio`.
    pub kind: String,
    /// Codec name.
    pub codec: String,
    /// Pixels (video).
    pub width: u32,
    /// Pixels (video).
    pub height: u32,
    /// Frames decoded.
    pub frames: u64,
}

/// Reads `seconds` of stream time from `url` and counts decoded frames per stream.
pub fn probe(url: &str, seconds: u32) -> Vec<ProbedStream> {
    let out = Command::new("timeout")
        .args(["-k", "5", &(seconds + 25).to_string()])
        .args([
            "ffprobe",
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "10000000",
        ])
        .args(["-count_frames", "-read_intervals", &format!("%+{seconds}")])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,width,height,nb_read_frames",
            "-of",
            "json",
        ])
        .arg(url)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe {url}: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| matches!(s["codec_type"].as_str(), Some("video" | "audio")))
                .map(|s| ProbedStream {
                    kind: s["codec_type"].as_str().unwrap_or_default().into(),
                    codec: s["codec_name"].as_str().unwrap_or_default().into(),
                    width: s["width"].as_u64().unwrap_or(0) as u32,
                    height: s["height"].as_u64().unwrap_or(0) as u32,
                    frames: s["nb_read_frames"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Probes `seconds` of `url` and asserts it plays the default [`Source`] (640x360 H.264 at
/// 30 fps with 1 s GOPs, AAC).
pub fn assert_plays_default(url: &str, seconds: u32, what: &str) {
    let s = Source::default();
    assert_plays(
        &probe(url, seconds),
        s.width,
        s.height,
        s.fps,
        s.gop,
        seconds,
        what,
    );
}

/// Asserts a probe saw H.264 at `width`x`height` and AAC, with frame counts matching `seconds`
/// of a `fps` stream (video within one GOP of `gop` frames, audio within a second).
pub fn assert_plays(
    streams: &[ProbedStream],
    width: u32,
    height: u32,
    fps: u32,
    gop: u32,
    seconds: u32,
    what: &str,
) {
    let video = streams
        .iter()
        .find(|s| s.kind == "video")
        .unwrap_or_else(|| panic!("{what}: no video in {streams:?}"));
    let audio = streams
        .iter()
        .find(|s| s.kind == "audio")
        .unwrap_or_else(|| panic!("{what}: no audio in {streams:?}"));
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", width, height),
        "{what}"
    );
    assert_eq!(audio.codec, "aac", "{what}");
    let expected = u64::from(fps * seconds);
    let tolerance = u64::from(gop);
    assert!(
        video.frames + tolerance >= expected && video.frames <= expected + tolerance,
        "{what}: {} video frames for {seconds}s at {fps} fps (expected {expected} ± {tolerance})",
        video.frames
    );
    // AAC at 44.1 kHz: 1024 samples per frame.
    let audio_expected = u64::from(seconds) * 44_100 / 1024;
    assert!(
        audio.frames + 44 >= audio_expected && audio.frames <= audio_expected + 44,
        "{what}: {} audio frames for {seconds}s (expected about {audio_expected})",
        audio.frames
    );
}

/// Whether `ffmpeg`/`ffprobe` exist (the test command installs them; a missing one is a failure).
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "{tool} is required (apt install ffmpeg)");
    }
}
