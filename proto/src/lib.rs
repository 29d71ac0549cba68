//! streamfleet's protocol code, sans-IO: parsers take bytes and return typed frames (`Ok(None)`
//! while incomplete, never an error), encoders write into a `BufMut`. Nothing here touches
//! sockets, files, threads or clocks (time comes in as an argument), and nothing knows about
//! nodes or roles: this crate depends on no async runtime, codec library or database driver,
//! so the compiler keeps it that way, and the fuzz targets build against it alone.
//!
//! - [`rtmp`]: handshake, chunk stream, AMF0, messages, server and client sessions, the LB's
//!   splice filter.
//! - [`flv`], [`avc`], [`aac`]: FLV tag bodies, H.264 (SPS, decoder configuration, NAL units,
//!   Annex B), AAC (AudioSpecificConfig, ADTS).
//! - [`ts`]: the MPEG-TS muxer (and a reader for tests); [`fmp4`]: CMAF fragments for LL-HLS;
//!   [`hls`]: media, LL-HLS and master playlists.
//! - [`http`]: HTTP/1 heads and bodies, cookies, the LB's request rewriting.
//! - [`relay`]: the origin -> edge relay messages; [`names`]: stream and rendition names.
//! - [`websocket`]: the opening of a signalling WebSocket the LB places by stream.

pub mod aac;
pub mod avc;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod http;
pub mod names;
pub mod relay;
pub mod rtmp;
pub mod ts;
pub mod websocket;
