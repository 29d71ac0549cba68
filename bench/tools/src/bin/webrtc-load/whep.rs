//! WHEP signalling for one viewer: builds its `Rtc` (full ICE, controlling, RTP mode, recvonly
//! H.264 and Opus), POSTs the offer to `/{app}/whep/{stream}` over a plain blocking HTTP/1.1
//! connection and applies the server's answer. The result is handed to a worker thread, which
//! owns the session's UDP socket from then on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::crypto::CryptoProvider;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, Rtc, RtcConfig};

/// Largest WHEP answer read (the server's are a few KiB).
const MAX_RESPONSE: usize = 256 * 1024;
/// Connect, write and read timeout of a WHEP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the WHEP endpoint is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's HTTP address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path, e.g. `/live/whep/bench`.
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host:port/path`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// WHEP URLs"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let path = if path.is_empty() { "/" } else { path };
        Ok(Endpoint {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The local IP address that routes to the server (the viewers' host candidate).
    pub fn local_ip(&self) -> std::io::Result<std::net::IpAddr> {
        let probe = UdpSocket::bind(SocketAddr::new(unspecified(self.addr), 0))?;
        probe.connect(self.addr)?;
        Ok(probe.local_addr()?.ip())
    }
}

fn unspecified(like: SocketAddr) -> std::net::IpAddr {
    match like {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// A viewer whose offer the server answered: its session and its bound socket.
pub struct Negotiated {
    /// The session, answer applied.
    pub session: Session,
    /// The viewer's own UDP socket (the server tells sessions apart by source address).
    pub socket: UdpSocket,
}

/// A viewer's negotiated session.
pub struct Session {
    /// Answer applied; ICE and DTLS start when the worker drives it.
    pub rtc: Rtc,
    /// The socket's address, as in the host candidate.
    pub local: SocketAddr,
    /// The video m-line.
    pub video: Mid,
    /// The audio m-line, when audio was offered and answered.
    pub audio: Option<Mid>,
    /// When the POST was sent.
    pub posted: Instant,
    /// When the answer was applied.
    pub answered: Instant,
}

/// Makes the viewer's offer, POSTs it and applies the answer.
pub fn negotiate(
    endpoint: &Endpoint,
    local_ip: std::net::IpAddr,
    crypto: &Arc<CryptoProvider>,
    audio: bool,
) -> Result<Negotiated, String> {
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).map_err(|e| format!("bind: {e}"))?;
    let local = socket.local_addr().map_err(|e| format!("bind: {e}"))?;
    let mut config = RtcConfig::new()
        .set_crypto_provider(crypto.clone())
        // Raw RTP out of str0m: no depacketizing or jitter buffer, the cheapest receiver.
        .set_rtp_mode(true)
        .clear_codecs();
    config.codec_config().enable_h264(true);
    config.codec_config().enable_opus(audio, false);
    let now = Instant::now();
    let mut rtc = config.build(now);
    let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let audio_mid =
        audio.then(|| api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None));
    let (offer, pending) = api.apply().ok_or("str0m made no offer")?;
    let posted = Instant::now();
    let (status, body) = post(endpoint, &offer.to_sdp_string())?;
    if status != 201 {
        return Err(format!("WHEP {status}: {}", body.trim()));
    }
    let answer = SdpAnswer::from_sdp_string(&body).map_err(|e| format!("answer: {e}"))?;
    let answered_audio = audio_mid.filter(|_| answer_has_audio(&body));
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("accept answer: {e}"))?;
    Ok(Negotiated {
        session: Session {
            rtc,
            local,
            video,
            audio: answered_audio,
            posted,
            answered: Instant::now(),
        },
        socket,
    })
}

/// Whether the answer accepted an audio m-line (a rejected one has port 0).
fn answer_has_audio(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.starts_with("m=audio ") && !l.starts_with("m=audio 0 "))
}

/// One `POST` with an `application/sdp` body; returns the status and the body.
fn post(endpoint: &Endpoint, sdp: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&endpoint.addr, HTTP_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    let io = |e: std::io::Error| format!("WHEP request: {e}");
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{sdp}",
        endpoint.path,
        endpoint.host,
        sdp.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse_response(&raw)
}

/// Status and body of an HTTP/1.1 response read to the end (`Connection: close`).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("WHEP response without a header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("WHEP response without a status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or("bad chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("short chunk")?;
        out.push_str(chunk);
        body = rest.get(size + 2..).ok_or("short chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whep_urls() {
        let e = Endpoint::parse("http://127.0.0.1:5080/live/whep/bench").unwrap();
        assert_eq!(e.addr, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(e.host, "127.0.0.1:5080");
        assert_eq!(e.path, "/live/whep/bench");
        assert!(Endpoint::parse("https://x/y").is_err());
    }

    #[test]
    fn reads_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nv=0";
        assert_eq!(parse_response(plain).unwrap(), (201, "v=0".into()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "abcde".into()));
    }

    #[test]
    fn a_rejected_audio_line_is_no_audio() {
        assert!(answer_has_audio(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        ));
        assert!(!answer_has_audio(
            "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\n"
        ));
    }
}
