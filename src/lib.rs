//! streamfleet: a clustered live-streaming server in one binary.
//!
//! - [`config`]: YAML -> validated, typed config (every default in one place).
//! - [`runtime`]: shutdown and drain, connection limits, listeners, readiness lines, metrics.
//! - [`cluster`]: node and stream records, the cluster store (embedded, MongoDB), heartbeats.
//! - [`lb`]: the load balancer: TLS, L4/RTMP/HTTP proxying, backends, health checks.
//! - [`media`]: media nodes: RTMP ingest and playback, hub, HLS, HTTP API, relay.
//! - [`node`]: binding and starting the nodes of one process.
//!
//! Protocol code (RTMP, FLV/AVC/AAC, MPEG-TS, HLS playlists, HTTP/1 heads, the relay) is the
//! sans-IO crate `streamfleet-proto` (`proto/`), which imports nothing from here.

pub mod cluster;
pub mod config;
pub mod lb;
pub mod media;
pub mod node;
pub mod runtime;
