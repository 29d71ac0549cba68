//! `mode: rtmp` frontends: publishers go to `publish_backend`, players to `play_backend`, which
//! HAProxy cannot do because it sees RTMP as opaque TCP.
//!
//! Data flow: the LB completes the RTMP handshake with the client and answers its `connect`
//! and `createStream` with a recording [`ServerSession`]; the `publish` or `play` command
//! chooses the backend (balance, health and retries as in `mode: tcp`). The LB then does the
//! client side of the handshake with the chosen server, replays every byte the client sent
//! after its handshake, and reads the server's answers with a [`ChunkDecoder`] up to the
//! `_result` of createStream (the duplicates of what the LB already answered are swallowed
//! there). From that point the server's bytes go through the [`streamfleet_proto::rtmp::splice::Splice`] filter to the client
//! (which fixes chunk headers the client's state would misread) until it is a pure copy, and
//! the client's bytes go to the server unchanged; then the connection is a plain byte pipe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Frontend;
use super::backend::{Backend, Server};
use super::counters::{Counters, add, inc};
use super::l4::{conns, pipe_termination};
use super::log::{Cause, Phase, TcpEntry, Termination};
use super::pipe::{self, PipeTimeouts};
use super::placement;
use super::upstream::{ConnectPlan, ConnectTrace, connect};
use crate::runtime::ConnPermit;
use crate::runtime::entropy::rtmp_handshake_seed;
use streamfleet_proto::rtmp::amf0::Amf0Value;
use streamfleet_proto::rtmp::chunk::{ChunkDecoder, ChunkError, DecoderLimits};
use streamfleet_proto::rtmp::handshake::{ClientHandshake, HandshakeError};
use streamfleet_proto::rtmp::message::{Message, MessageError};
use streamfleet_proto::rtmp::session::{ServerConfig, ServerEvent, ServerSession, SessionError};
use streamfleet_proto::rtmp::splice::SpliceError;

/// Most client bytes recorded before `publish`/`play` (connect, createStream and friends are
/// a few hundred bytes; a client that sends this much without choosing is refused).
pub const MAX_RECORDED: usize = 64 * 1024;
/// Most server messages read before the splice point.
const MAX_PRE_SPLICE_MESSAGES: usize = 64;

/// Why an RTMP session through the LB ended early.
#[derive(Debug, thiserror::Error)]
pub enum RtmpProxyError {
    /// The client broke RTMP (or sent too much before choosing).
    #[error("client RTMP session")]
    Client(#[source] SessionError),
    /// The server's handshake failed.
    #[error("server handshake")]
    ServerHandshake(#[source] HandshakeError),
    /// The server's chunk stream was malformed before the splice point.
    #[error("server chunk stream")]
    ServerChunks(#[source] ChunkError),
    /// A server message before the splice point was malformed.
    #[error("server message")]
    ServerMessage(#[source] MessageError),
    /// The server never answered createStream within the first messages.
    #[error("the server sent {0} messages without answering createStream")]
    NoSplicePoint(usize),
    /// The splice filter failed.
    #[error("splice")]
    Splice(#[source] SpliceError),
    /// A socket failed (`which` says whose).
    #[error("{which} i/o")]
    Io {
        /// `client` or `server`.
        which: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A peer stayed silent too long (`which` says whose).
    #[error("{which} timeout")]
    Timeout {
        /// `client` or `server`.
        which: &'static str,
    },
    /// The client had not chosen `publish` or `play` by the frontend's `handshake_timeout`.
    #[error("no publish or play within the handshake timeout of {0:?}")]
    HandshakeTimeout(Duration),
    /// A peer closed before the session was set up.
    #[error("{which} closed the connection")]
    Closed {
        /// `client` or `server`.
        which: &'static str,
    },
}

/// What the client asked for.
#[derive(Debug, Clone, PartialEq)]
enum Intent {
    Publish { stream_id: u32, name: String },
    Play { stream_id: u32, name: String },
}

/// Serves one client of an RTMP frontend.
pub async fn serve(fe: Arc<Frontend>, client: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    let start = Instant::now();
    let _fe_session = fe.counters.open();
    let mut route = Route::default();
    let result = run(&fe, client, peer, &mut route).await;
    let termination = match &result {
        Ok(t) => *t,
        Err(e) => {
            inc(&fe.counters.request_errors);
            tracing::info!(frontend = %fe.config.name, %peer, error = %e, source = ?std::error::Error::source(&e), "rtmp session ended");
            e.termination(route.server.is_some())
        }
    };
    let bytes = route.session.snapshot();
    let entry = TcpEntry {
        client: peer,
        start,
        frontend: &fe.config.name,
        backend: route.backend.as_deref().map(|b| b.name.as_str()),
        server: route.server.as_deref().map(|s| s.name.as_str()),
        t_queue: route.backend.as_ref().map(|_| Duration::ZERO),
        t_connect: route.t_connect,
        bytes_in: bytes.bytes_in,
        bytes_out: bytes.bytes_out,
        termination,
        conns: conns(
            &fe,
            route.backend.as_deref(),
            route.server.as_deref(),
            &route.trace,
        ),
    };
    fe.log.tcp(&entry, Instant::now());
}

/// Where a session went, for the access log.
#[derive(Debug, Default)]
struct Route {
    backend: Option<Arc<Backend>>,
    server: Option<Arc<Server>>,
    t_connect: Option<Duration>,
    trace: ConnectTrace,
    /// This session's own byte counts.
    session: Arc<Counters>,
}

impl RtmpProxyError {
    /// The access log's termination state; `routed` once a server was reached.
    fn termination(&self, routed: bool) -> Termination {
        let phase = if routed { Phase::Data } else { Phase::Request };
        let which = |w: &str| w == "client";
        let cause = match self {
            RtmpProxyError::Client(_) => Cause::Proxy,
            RtmpProxyError::Timeout { which: w } if which(w) => Cause::ClientTimeout,
            RtmpProxyError::HandshakeTimeout(_) => Cause::ClientTimeout,
            RtmpProxyError::Timeout { .. } => Cause::ServerTimeout,
            RtmpProxyError::Io { which: w, .. } | RtmpProxyError::Closed { which: w }
                if which(w) || *w == "pipe" =>
            {
                Cause::ClientAbort
            }
            _ => Cause::ServerAbort,
        };
        Termination { cause, phase }
    }
}

async fn read(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
    which: &'static str,
) -> Result<(), RtmpProxyError> {
    buf.reserve(16 * 1024);
    match tokio::time::timeout(timeout, stream.read_buf(buf)).await {
        Err(_) => Err(RtmpProxyError::Timeout { which }),
        Ok(Err(source)) => Err(RtmpProxyError::Io { which, source }),
        Ok(Ok(0)) => Err(RtmpProxyError::Closed { which }),
        Ok(Ok(_)) => Ok(()),
    }
}

async fn write(
    stream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
    which: &'static str,
) -> Result<(), RtmpProxyError> {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Err(_) => Err(RtmpProxyError::Timeout { which }),
        Ok(Err(source)) => Err(RtmpProxyError::Io { which, source }),
        Ok(Ok(())) => Ok(()),
    }
}

async fn run(
    fe: &Frontend,
    mut client: TcpStream,
    peer: SocketAddr,
    route: &mut Route,
) -> Result<Termination, RtmpProxyError> {
    let t = fe.timeouts;
    let session = route.session.clone();
    let (rand, epoch) = rtmp_handshake_seed();
    let config = ServerConfig {
        record_input: Some(MAX_RECORDED),
        ..ServerConfig::default()
    };
    let mut rtmp = ServerSession::new(config, epoch, &rand);
    let mut cbuf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::new();

    // 1. Handshake, connect and createStream with the LB, until publish or play, within the
    //    frontend's handshake deadline (a client trickling bytes resets no timer).
    let mut app = String::new();
    let deadline = fe.config.handshake_timeout;
    let chosen = tokio::time::timeout(deadline, async {
        loop {
            read(&mut client, &mut cbuf, t.client, "client").await?;
            add(&fe.counters.bytes_in, cbuf.len() as u64);
            add(&session.bytes_in, cbuf.len() as u64);
            rtmp.handle_input(&cbuf).map_err(RtmpProxyError::Client)?;
            cbuf.clear();
            let mut intent = None;
            while let Some(event) = rtmp.poll_event() {
                match event {
                    ServerEvent::Connect { app: a, .. } => {
                        app = a;
                        rtmp.accept_connect().map_err(RtmpProxyError::Client)?
                    }
                    ServerEvent::Publish {
                        stream_id, name, ..
                    } => intent = Some(Intent::Publish { stream_id, name }),
                    ServerEvent::Play {
                        stream_id, name, ..
                    } => intent = Some(Intent::Play { stream_id, name }),
                    _ => {}
                }
            }
            out.clear();
            rtmp.take_output(&mut out);
            if !out.is_empty() {
                write(&mut client, &out, t.client, "client").await?;
                add(&fe.counters.bytes_out, out.len() as u64);
                add(&session.bytes_out, out.len() as u64);
            }
            if let Some(i) = intent {
                break Ok::<Intent, RtmpProxyError>(i);
            }
        }
    })
    .await;
    let intent = match chosen {
        Ok(intent) => intent?,
        Err(_) => {
            inc(&fe.counters.handshake_timeouts);
            return Err(RtmpProxyError::HandshakeTimeout(deadline));
        }
    };
    let (backend_index, stream_id, name) = match &intent {
        Intent::Publish { stream_id, name } => (
            fe.config.publish_backend.or(fe.config.backend),
            *stream_id,
            name,
        ),
        Intent::Play { stream_id, name } => (
            fe.config.play_backend.or(fe.config.backend),
            *stream_id,
            name,
        ),
    };
    let Some(backend) = backend_index.and_then(|i| fe.backend(i)) else {
        return Err(RtmpProxyError::Closed { which: "server" });
    };
    route.backend = Some(backend.clone());
    let recorded = rtmp.take_recorded_input().unwrap_or_default();
    let downstream = rtmp.downstream_state();

    // 2. A server of the chosen backend.
    let set = backend.servers();
    let plan = ConnectPlan {
        preferred: None,
        client: peer.ip(),
        stream: placement::rtmp_stream(&app, name),
        timeout: t.connect,
        pooled: false,
    };
    let connect_started = Instant::now();
    let mut upstream = match connect(backend, &set, plan, &mut route.trace).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(frontend = %fe.config.name, backend = %backend.name, %peer, error = %e, "no server reachable");
            refuse(&mut rtmp, &intent, &mut client, t.client).await;
            route.server = route.trace.server.clone();
            return Ok(Termination {
                cause: Cause::ServerAbort,
                phase: Phase::Connect,
            });
        }
    };
    route.t_connect = Some(connect_started.elapsed());
    route.server = Some(upstream.server.clone());
    let _be_session = backend.counters.open();
    let _srv_session = upstream.server.counters.open();
    tracing::debug!(frontend = %fe.config.name, %peer, ?intent, server = %upstream.server.name, "rtmp session routed");
    let counters = [
        &fe.counters,
        &backend.counters,
        &upstream.server.counters,
        &session,
    ];
    let server = &mut upstream.stream;

    // 3. Handshake with the server, replay, read up to the splice point.
    let mut sbuf = BytesMut::with_capacity(16 * 1024);
    out.clear();
    let (rand, epoch) = rtmp_handshake_seed();
    let mut hs = ClientHandshake::start(epoch, &rand, true, &mut out);
    loop {
        write(server, &out, t.server, "server").await?;
        out.clear();
        read(server, &mut sbuf, t.server, "server").await?;
        if hs
            .read(&mut sbuf, &mut out)
            .map_err(RtmpProxyError::ServerHandshake)?
            .is_some()
        {
            break;
        }
    }
    out.extend_from_slice(&recorded);
    write(server, &out, t.server, "server").await?;
    // The frontend and this session counted these bytes when the client sent them.
    add(&backend.counters.bytes_in, recorded.len() as u64);
    add(&upstream.server.counters.bytes_in, recorded.len() as u64);
    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    let mut seen = 0;
    loop {
        match decoder
            .decode(&mut sbuf)
            .map_err(RtmpProxyError::ServerChunks)?
        {
            Some(raw) => {
                seen += 1;
                if is_create_stream_result(
                    &Message::from_raw(&raw).map_err(RtmpProxyError::ServerMessage)?,
                    stream_id,
                ) {
                    break;
                }
                if seen >= MAX_PRE_SPLICE_MESSAGES {
                    return Err(RtmpProxyError::NoSplicePoint(seen));
                }
            }
            None => read(server, &mut sbuf, t.server, "server").await?,
        }
    }
    let mut splice = decoder
        .into_splice(&downstream)
        .map_err(RtmpProxyError::Splice)?;

    // 4. Filtered until the splice is a pure copy, then a plain pipe.
    let mut to_client = BytesMut::new();
    let mut from_client = BytesMut::with_capacity(16 * 1024);
    loop {
        to_client.clear();
        splice
            .forward(&mut sbuf, &mut to_client)
            .map_err(RtmpProxyError::Splice)?;
        if !to_client.is_empty() {
            write(&mut client, &to_client, t.client, "client").await?;
            count(&counters, 0, to_client.len());
        }
        if splice.is_pure_copy() {
            break;
        }
        from_client.reserve(16 * 1024);
        sbuf.reserve(16 * 1024);
        tokio::select! {
            r = tokio::time::timeout(t.tunnel, client.read_buf(&mut from_client)) => match r {
                Err(_) => return Err(RtmpProxyError::Timeout { which: "client" }),
                Ok(Err(source)) => return Err(RtmpProxyError::Io { which: "client", source }),
                Ok(Ok(0)) => return Ok(Termination::NORMAL),
                Ok(Ok(n)) => {
                    write(server, &from_client, t.server, "server").await?;
                    from_client.clear();
                    count(&counters, n, 0);
                }
            },
            r = tokio::time::timeout(t.tunnel, server.read_buf(&mut sbuf)) => match r {
                Err(_) => return Err(RtmpProxyError::Timeout { which: "server" }),
                Ok(Err(source)) => return Err(RtmpProxyError::Io { which: "server", source }),
                Ok(Ok(0)) => return Ok(Termination::NORMAL),
                Ok(Ok(_)) => {}
            },
            () = fe.shutdown.stopped() => return Ok(Termination { cause: Cause::Killed, phase: Phase::Data }),
        }
    }
    let timeouts = PipeTimeouts {
        idle: t.tunnel,
        client_fin: t.client_fin,
    };
    match pipe::run(
        &mut client,
        server,
        &[],
        &sbuf,
        timeouts,
        &counters,
        &fe.shutdown,
    )
    .await
    {
        Ok(end) => {
            tracing::debug!(frontend = %fe.config.name, %peer, ?end, "rtmp session ended");
            Ok(pipe_termination(&end))
        }
        Err(source) => Err(RtmpProxyError::Io {
            which: "pipe",
            source,
        }),
    }
}

fn count(counters: &[&Arc<Counters>; 4], bytes_in: usize, bytes_out: usize) {
    for c in counters {
        add(&c.bytes_in, bytes_in as u64);
        add(&c.bytes_out, bytes_out as u64);
    }
}

/// The server's `_result` to createStream: its only argument is the stream id the LB gave the
/// client (servers count createStream from 1 like the LB does).
fn is_create_stream_result(message: &Message, stream_id: u32) -> bool {
    match message {
        Message::Command(c) if c.name == "_result" => {
            matches!(c.args.as_slice(), [Amf0Value::Number(n)] if *n == f64::from(stream_id))
        }
        _ => false,
    }
}

/// Tells the client no server could take it (an error onStatus), best effort.
async fn refuse(
    session: &mut ServerSession,
    intent: &Intent,
    client: &mut TcpStream,
    timeout: Duration,
) {
    let answered = match intent {
        Intent::Publish { stream_id, .. } => session.reject_publish(
            *stream_id,
            "NetStream.Publish.BadConnection",
            "No server is available.",
        ),
        Intent::Play { stream_id, .. } => session.reject_play(
            *stream_id,
            "NetStream.Play.Failed",
            "No server is available.",
        ),
    };
    if answered.is_ok() {
        let mut out = BytesMut::new();
        session.take_output(&mut out);
        // The client is told why if it still listens; it is closed either way.
        let _ = tokio::time::timeout(timeout, client.write_all(&out)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_proto::rtmp::message::Command;

    fn result(args: Vec<Amf0Value>) -> Message {
        Message::Command(Command {
            name: "_result".into(),
            transaction_id: 4.0,
            command_object: Amf0Value::Null,
            args,
        })
    }

    #[test]
    fn only_the_create_stream_result_is_the_splice_point() {
        assert!(is_create_stream_result(
            &result(vec![Amf0Value::Number(1.0)]),
            1
        ));
        assert!(!is_create_stream_result(
            &result(vec![Amf0Value::Number(2.0)]),
            1
        ));
        // connect's _result has two arguments; releaseStream's may have a null.
        assert!(!is_create_stream_result(
            &result(vec![Amf0Value::Null, Amf0Value::Null]),
            1
        ));
        assert!(!is_create_stream_result(&result(vec![Amf0Value::Null]), 1));
        let on_status = Message::Command(Command {
            name: "onStatus".into(),
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            args: vec![Amf0Value::Number(1.0)],
        });
        assert!(!is_create_stream_result(&on_status, 1));
    }
}
