//! The QUIC relay between origins and edges (DESIGN.md §5), over quinn.
//!
//! - [`server`]: an origin's relay listener; serves subscriptions from its hubs.
//! - [`client`]: an edge's puller; subscribes on demand and feeds local hubs (`order` puts
//!   each rendition's GOPs back in the origin's order).
//!
//! Authentication: TLS alone cannot prove knowledge of the cluster secret, so each side sends an
//! HMAC-SHA256 of the secret over a TLS exporter value of the connection (channel binding: a
//! man in the middle would see different exporter values on its two legs). Certificates are
//! throwaway self-signed ones, and the client does not check them: the MAC is the proof. A peer
//! that fails is closed with [`close::AUTH_FAILED`](streamfleet_proto::relay::close) and one log line.

pub mod client;
mod lookups;
mod order;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hmac::{Hmac, KeyInit, Mac};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use crate::config::Secret;
use streamfleet_proto::relay::{ALPN, MAC_LEN, Message, RelayError};

/// Label of the TLS exporter value the MACs cover.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-streamfleet-relay-auth";
/// Time a peer has to authenticate.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive and idle limits: a dead peer is noticed within the idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Relay failures.
#[derive(Debug, thiserror::Error)]
pub enum RelayIoError {
    /// QUIC connection failure.
    #[error("relay connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Opening a connection failed.
    #[error("relay connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// Writing to a stream failed.
    #[error("relay write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading from a stream failed.
    #[error("relay read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The peer sent something malformed.
    #[error("relay protocol: {0}")]
    Protocol(#[from] RelayError),
    /// The peer does not know the cluster secret.
    #[error("relay peer failed authentication")]
    AuthFailed,
    /// A stream ended where a message was expected.
    #[error("relay stream ended early")]
    Eof,
    /// The peer took too long.
    #[error("relay peer timed out")]
    Timeout,
    /// The throwaway relay certificate could not be made.
    #[error("relay certificate")]
    Certificate(#[source] rcgen::Error),
    /// The relay's TLS settings were refused.
    #[error("relay TLS settings")]
    Tls(#[source] rustls::Error),
    /// The TLS settings offer no cipher suite QUIC can use.
    #[error("relay QUIC crypto")]
    QuicCrypto(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The QUIC endpoint could not be made on its UDP socket.
    #[error("relay QUIC endpoint")]
    Endpoint(#[source] std::io::Error),
    /// The connection has no TLS exporter to bind the authentication to.
    #[error("relay connection has no TLS exporter")]
    Exporter,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // Constant, in range: the conversion cannot fail.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    // One unidirectional stream per GOP per rendition: allow many in flight.
    t.max_concurrent_uni_streams(1024u32.into());
    t.max_concurrent_bidi_streams(256u32.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((64u32 << 20).into());
    t.send_window(64 << 20);
    t
}

/// The origin side's QUIC config: a fresh self-signed certificate.
pub fn server_config() -> Result<quinn::ServerConfig, RelayIoError> {
    let cert = rcgen::generate_simple_self_signed(vec!["streamfleet-relay".to_owned()])
        .map_err(RelayIoError::Certificate)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(RelayIoError::Tls)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(RelayIoError::Tls)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(RelayIoError::QuicCrypto)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(server_transport()));
    Ok(config)
}

/// Bidirectional streams an authenticated edge may have open at once on an origin (the auth
/// stream, then one per subscription).
pub const MAX_EDGE_STREAMS: u32 = 256;

/// What an origin offers a peer that has not proved the cluster secret yet: one bidirectional
/// stream (for the Auth message), no unidirectional ones (edges never open any), and small
/// windows (edges only send control messages). [`MAX_EDGE_STREAMS`] is granted after auth.
fn server_transport() -> quinn::TransportConfig {
    let mut t = transport();
    t.max_concurrent_uni_streams(0u32.into());
    t.max_concurrent_bidi_streams(1u32.into());
    t.stream_receive_window((16u32 << 10).into());
    t.receive_window((256u32 << 10).into());
    t
}

/// The edge side's QUIC config.
pub fn client_config() -> Result<quinn::ClientConfig, RelayIoError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(RelayIoError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MacIsTheProof(provider())))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(RelayIoError::QuicCrypto)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// Accepts any server certificate (still checking the handshake signature made with it):
/// authenticity comes from the secret-keyed MAC over the exporter value, checked right after.
#[derive(Debug)]
struct MacIsTheProof(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for MacIsTheProof {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Which side computes a MAC (the two MACs differ, so one cannot be reflected as the other).
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// The edge.
    Client,
    /// The origin.
    Server,
}

/// HMAC-SHA256(secret, side || exporter value of `conn`).
pub fn auth_mac(
    secret: &Secret,
    conn: &quinn::Connection,
    side: Side,
) -> Result<[u8; MAC_LEN], RelayIoError> {
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .map_err(|_| RelayIoError::Exporter)?;
    // Invariant: HMAC takes keys of any length, so `new_from_slice` cannot fail.
    #[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(match side {
        Side::Client => b"client",
        Side::Server => b"server",
    });
    mac.update(&exporter);
    Ok(mac.finalize().into_bytes().into())
}

/// Checks a peer's MAC in constant time.
pub fn auth_ok(secret: &Secret, conn: &quinn::Connection, side: Side, mac: &[u8; MAC_LEN]) -> bool {
    auth_mac(secret, conn, side)
        .is_ok_and(|expected| subtle::ConstantTimeEq::ct_eq(&expected[..], &mac[..]).into())
}

/// Writes one message.
pub async fn send(stream: &mut quinn::SendStream, msg: &Message) -> Result<usize, RelayIoError> {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf);
    stream.write_all(&buf).await?;
    Ok(buf.len())
}

/// Reads messages from a receive stream.
pub struct MessageReader {
    stream: quinn::RecvStream,
    buf: BytesMut,
}

impl MessageReader {
    /// Wraps a stream.
    pub fn new(stream: quinn::RecvStream) -> Self {
        MessageReader {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next message; `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Message>, RelayIoError> {
        loop {
            if let Some(msg) = Message::decode(&mut self.buf)? {
                return Ok(Some(msg));
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await? {
                Some(n) => self.buf.extend_from_slice(&chunk[..n]),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(RelayIoError::Eof),
            }
        }
    }

    /// Asks the peer to stop sending (a late GOP).
    pub fn stop(&mut self) {
        // The stream may already be finished; nothing to do then.
        let _ = self.stream.stop(0u32.into());
    }
}

/// Counts one in a gauge while it lives (an edge connected, a subscription held).
pub struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    /// Increments `g` until the guard is dropped.
    pub fn new(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Unix time in microseconds.
pub fn unix_us() -> u64 {
    crate::runtime::entropy::unix_time().as_micros() as u64
}
