//! End-to-end tests: the real `streamfleet` binary, started with generated configs on ports
//! the OS picks, driven by real clients (ffmpeg, ffprobe, curl, headless Chromium, a
//! MongoDB-compatible server). One test binary with one module per scenario, so the suite
//! links ffmpeg, x264 and the MongoDB driver once.
//!
//! Unwrap and expect are the assertions of a test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod antmedia_ws;
mod browser_hls;
mod cluster;
mod edge_flood;
mod foundation;
mod lb_balance;
mod lb_discovery;
mod lb_h2;
mod lb_health;
mod lb_http;
mod lb_log;
mod lb_rtmp;
mod lb_source_limit;
mod lb_stats;
mod lb_sticky;
mod lb_tcp;
mod lb_tls;
mod lb_ws_place;
mod llhls;
mod machines;
mod media;
mod rest_security;
mod same_hls;
mod store;
mod transcode;
mod webhooks;
mod webrtc;
mod webrtc_publish;
mod webrtc_quality;
