//! The WebRTC counters of a node (`/metrics`): sessions, connections, what viewers report
//! (NACKs, PLIs), audio, and rendition switches.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// WebRTC counters of a node.
#[derive(Debug, Clone, Default)]
pub struct WebRtcMetrics {
    /// Sessions open now (connecting or playing).
    pub sessions: Gauge,
    /// Sessions that reached ICE + DTLS connected.
    pub connected: Counter,
    /// Sessions dropped because they never connected.
    pub timeouts: Counter,
    /// Datagrams that matched no session.
    pub unmatched: Counter,
    /// Opus packets written to sessions.
    pub audio_packets: Counter,
    /// AAC frames the Opus transcoders could not take.
    pub audio_errors: Counter,
    /// NACKs viewers sent for video (each asks for lost packets; str0m resends them, RTX).
    pub nacks: Counter,
    /// Picture loss indications viewers sent for video.
    pub plis: Counter,
    /// Rendition switches made, every reason.
    pub switches: Counter,
    /// Rendition switches the bandwidth estimate decided (ABR).
    pub bandwidth_switches: Counter,
}

impl WebRtcMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webrtc_sessions",
            "WebRTC sessions open",
            self.sessions.clone(),
        );
        registry.register(
            "webrtc_connected",
            "WebRTC sessions that connected (ICE and DTLS)",
            self.connected.clone(),
        );
        registry.register(
            "webrtc_connect_timeouts",
            "WebRTC sessions dropped for not connecting in time",
            self.timeouts.clone(),
        );
        registry.register(
            "webrtc_unmatched_datagrams",
            "UDP datagrams on the WebRTC port that belonged to no session",
            self.unmatched.clone(),
        );
        registry.register(
            "webrtc_audio_packets",
            "Opus packets written to WebRTC sessions",
            self.audio_packets.clone(),
        );
        registry.register(
            "webrtc_audio_errors",
            "AAC frames the Opus transcoders of WebRTC audio could not take",
            self.audio_errors.clone(),
        );
        registry.register(
            "webrtc_nacks",
            "NACKs (lost video packets to resend) received from WebRTC viewers",
            self.nacks.clone(),
        );
        registry.register(
            "webrtc_plis",
            "Picture loss indications received from WebRTC viewers",
            self.plis.clone(),
        );
        registry.register(
            "webrtc_rendition_switches",
            "WebRTC viewers switched to another rendition (forced, B-frames or bandwidth)",
            self.switches.clone(),
        );
        registry.register(
            "webrtc_bandwidth_switches",
            "WebRTC viewers switched to another rendition by their bandwidth estimate",
            self.bandwidth_switches.clone(),
        );
    }
}
