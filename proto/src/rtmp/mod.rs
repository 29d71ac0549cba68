//! RTMP, sans-IO: handshake, chunk stream, AMF0, typed messages, server and client sessions,
//! and the load balancer's splice filter.
//!
//! Data flows bottom-up: socket bytes go through the [`handshake`], then the [`chunk`] decoder
//! reassembles [`chunk::RawMessage`]s, [`message`] types them (bodies in [`amf0`]), and the
//! [`session`] state machines turn them into events for the application and answers for the
//! peer. Output flows the other way through the chunk encoder. The IO layer owns the sockets
//! and the clock; everything here takes bytes and returns bytes.

pub mod amf0;
pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;
pub mod splice;
