//! Sans-IO protocol code: parsers take bytes and return typed frames (`Ok(None)` while
//! incomplete), encoders write into a `BufMut`. Nothing here touches sockets, files or clocks.

pub mod aac;
pub mod avc;
pub mod flv;
pub mod hls;
pub mod http;
pub mod rtmp;
pub mod ts;
