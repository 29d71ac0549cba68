//! streamfleet: a clustered live-streaming server in one binary.
//!
//! - [`proto`]: sans-IO protocol code (RTMP, FLV/AVC/AAC, MPEG-TS, HLS playlists, HTTP/1 heads).
#![deny(unsafe_code)]

pub mod proto;
