//! RTMP connections of a media node: socket bytes into the sans-IO [`ServerSession`], its
//! events answered here (app check, publish rules, stream ownership, play), media into the hub,
//! hub events out to players.
//!
//! One task per connection `select!`s over socket reads, the player's hub subscription, the
//! lease's "lost" signal and shutdown. Writes are awaited in the loop: a player that reads
//! slowly falls behind in the hub, and the hub's slow-subscriber policy takes over (skip, then
//! disconnect).

mod play;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use self::play::Playback;
use super::access;
use super::hub::{HubEvent, HubKey, Hubs, SubscriberKind, TryRecvError};
use super::ingest::{Ingest, PublishRefused, Publishing};
use super::stats::MediaStats;
use crate::config::MediaConfig;
use crate::runtime::entropy::rtmp_handshake_seed;
use crate::runtime::{ConnPermit, Shutdown};
use streamfleet_proto::rtmp::session::{ServerConfig, ServerEvent, ServerSession, SessionError};

/// Time to complete the handshake and `connect`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A publisher silent this long is gone.
const PUBLISHER_IDLE: Duration = Duration::from_secs(30);
/// A write blocked this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hub events encoded per socket write for a player (batching keeps syscalls down).
const PLAYER_BATCH: usize = 256;
/// Payload bytes encoded per socket write for a player: bounds the output buffer (and so the
/// memory each player keeps) when a GOP cache or a backlog is sent at once.
const PLAYER_BATCH_BYTES: u64 = 64 * 1024;
/// First read buffer of a connection: enough for the handshake and a player's acknowledgements.
const READ_BUF_MIN: usize = 4 * 1024;
/// Read buffer a busy connection (a publisher) grows to.
const READ_BUF_MAX: usize = 64 * 1024;
/// Pieces of output handed to one vectored write (IOV_MAX is 1024 on Linux).
const WRITE_IOVECS: usize = 64;

/// What RTMP connections of one node share.
pub struct RtmpContext {
    /// The node.
    pub config: Arc<MediaConfig>,
    /// Its hubs.
    pub hubs: Arc<Hubs>,
    /// Who may publish, shared with WebRTC ingest (stream ownership, the ladder).
    pub publishing: Arc<Publishing>,
    /// Counters.
    pub stats: Arc<MediaStats>,
    /// Drain and stop.
    pub shutdown: Shutdown,
    /// Pulls streams from origins (edges and standalone nodes).
    pub puller: Option<Arc<super::relay::client::Puller>>,
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(#[from] SessionError),
    /// The peer was too slow at something.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// Another origin took the stream over.
    #[error("stream taken over by another origin")]
    LeaseLost,
    /// The player fell behind and the hub dropped it.
    #[error("player too slow: disconnected by the hub")]
    Slow,
    /// The peer hung up in the middle of the handshake or before `connect`.
    #[error("peer closed the connection before connecting")]
    EarlyClose,
    /// The peer connected and hung up without sending a byte (a TCP health check).
    #[error("peer closed the connection without sending anything")]
    Probe,
}

/// Serves one RTMP connection until it closes.
pub async fn serve(ctx: Arc<RtmpContext>, stream: TcpStream, peer: SocketAddr, permit: ConnPermit) {
    let _permit = permit;
    ctx.stats.rtmp_connections.inc();
    let mut conn = Connection::new(ctx.clone(), peer);
    match conn.run(stream).await {
        Ok(()) => tracing::debug!(%peer, "rtmp connection closed"),
        Err(e @ ConnError::Probe) => tracing::debug!(%peer, "rtmp connection closed: {e}"),
        Err(e) => {
            if matches!(e, ConnError::Protocol(_)) {
                ctx.stats.rtmp_errors.inc();
            }
            tracing::info!(%peer, stream = conn.stream_name().as_deref().unwrap_or("-"), "rtmp connection closed: {e}");
        }
    }
}

struct Connection {
    ctx: Arc<RtmpContext>,
    peer: SocketAddr,
    session: ServerSession,
    app: Option<String>,
    ingest: Option<Ingest>,
    playback: Option<Playback>,
}

impl Connection {
    fn new(ctx: Arc<RtmpContext>, peer: SocketAddr) -> Self {
        let (random, epoch) = rtmp_handshake_seed();
        Connection {
            ctx,
            peer,
            session: ServerSession::new(ServerConfig::default(), epoch, &random),
            app: None,
            ingest: None,
            playback: None,
        }
    }

    fn stream_name(&self) -> Option<String> {
        self.ingest.as_ref().map(|i| i.name()).or_else(|| {
            self.playback
                .as_ref()
                .map(|p| p.sub.hub().key().to_string())
        })
    }

    async fn run(&mut self, stream: TcpStream) -> Result<(), ConnError> {
        let (mut rd, mut wr) = stream.into_split();
        // Players only read acknowledgements: start small, grow while reads fill the buffer.
        let mut buf = vec![0u8; READ_BUF_MIN];
        let mut chain = VecDeque::new();
        let connect_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut received = 0usize;
        // Players are paced by the hub (woken at most once per `hub::PACE_INTERVAL`), so each
        // write (and each wake-up of this task and of the player) carries several frames.
        // Made once: a fresh wait at every batch would register and unregister with the
        // shutdown token (one lock shared by every connection) each time.
        let shutdown = self.ctx.shutdown.clone();
        let stopped = shutdown.stopped();
        tokio::pin!(stopped);
        loop {
            // The session's output (its own bytes and the frames' shared chunks) goes to the
            // socket as it is, in as few writes as possible, without a copy.
            while let Some(out) = self.session.poll_output() {
                chain.push_back(out);
            }
            if !chain.is_empty() {
                match tokio::time::timeout(WRITE_TIMEOUT, write_chain(&mut wr, &mut chain)).await {
                    Ok(r) => {
                        self.ctx.stats.egress_bytes.inc_by(r?);
                    }
                    Err(_) => return Err(ConnError::Timeout("writing to the peer")),
                }
            }
            if self.session.is_closed() {
                return Ok(());
            }
            // Before `connect`: the handshake deadline. Publishers: an idle timeout. Players
            // send almost nothing, so they get none (a dead player fails the writes instead),
            // and no timer to set up at every batch.
            let read_limit = if self.app.is_none() {
                Some(connect_deadline.saturating_duration_since(Instant::now()))
            } else if self.playback.is_some() && self.ingest.is_none() {
                None
            } else {
                Some(PUBLISHER_IDLE)
            };
            tokio::select! {
                r = read_within(&mut rd, &mut buf, read_limit) => {
                    let n = match r {
                        Some(r) => r?,
                        None if self.app.is_none() => return Err(ConnError::Timeout("in the handshake")),
                        None => return Err(ConnError::Timeout("waiting for the publisher's data")),
                    };
                    if n == 0 {
                        return match (self.app.is_some(), received) {
                            (true, _) => Ok(()),
                            (false, 0) => Err(ConnError::Probe),
                            (false, _) => Err(ConnError::EarlyClose),
                        };
                    }
                    self.ctx.stats.ingress_bytes.inc_by(n as u64);
                    received += n;
                    self.session.handle_input(buf.get(..n).unwrap_or_default())?;
                    if n == buf.len() && buf.len() < READ_BUF_MAX {
                        buf.resize(buf.len() * 2, 0);
                    }
                    self.process_events().await?;
                }
                event = next_event(&mut self.playback) => {
                    let Some(event) = event else { return Err(ConnError::Slow) };
                    let mut queued = self.play_event(event)?;
                    for _ in 0..PLAYER_BATCH {
                        let Some(p) = &mut self.playback else { break };
                        if queued >= PLAYER_BATCH_BYTES {
                            // A backlog: the rest goes right after this write.
                            break;
                        }
                        match p.sub.try_recv() {
                            Ok(event) => queued += self.play_event(event)?,
                            Err(TryRecvError::Disconnected) => return Err(ConnError::Slow),
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                }
                () = lease_lost(&mut self.ingest) => return Err(ConnError::LeaseLost),
                () = &mut stopped => return Ok(()),
            }
        }
    }

    /// Encodes one hub event for the player; returns the payload bytes queued.
    fn play_event(&mut self, event: HubEvent) -> Result<u64, ConnError> {
        match &mut self.playback {
            Some(p) => Ok(p.on_event(&mut self.session, event)?),
            None => Ok(0),
        }
    }

    async fn process_events(&mut self) -> Result<(), ConnError> {
        while let Some(event) = self.session.poll_event() {
            match event {
                ServerEvent::HandshakeDone { .. } => {}
                ServerEvent::Connect { app, .. } => {
                    // Some clients put a query or a trailing slash on the app.
                    let app = app
                        .split('?')
                        .next()
                        .unwrap_or_default()
                        .trim_matches('/')
                        .to_owned();
                    if self.ctx.config.app(&app).is_some() {
                        self.session.accept_connect()?;
                        self.app = Some(app);
                    } else {
                        tracing::info!(peer = %self.peer, %app, "connect to an unknown application refused");
                        self.session
                            .reject_connect(&format!("unknown application `{app}`"))?;
                    }
                }
                ServerEvent::Publish {
                    stream_id, name, ..
                } => self.on_publish(stream_id, &name).await?,
                ServerEvent::Play {
                    stream_id, name, ..
                } => self.on_play(stream_id, &name).await?,
                ServerEvent::Audio {
                    stream_id,
                    timestamp,
                    payload,
                } => {
                    if let Some(i) = self.ingest.as_mut().filter(|i| i.stream_id == stream_id) {
                        i.audio(timestamp, payload);
                    }
                }
                ServerEvent::Video {
                    stream_id,
                    timestamp,
                    payload,
                } => {
                    if let Some(i) = self.ingest.as_mut().filter(|i| i.stream_id == stream_id) {
                        i.video(timestamp, payload);
                    }
                }
                ServerEvent::Metadata {
                    stream_id, payload, ..
                } => {
                    if let Some(i) = self.ingest.as_mut().filter(|i| i.stream_id == stream_id) {
                        i.metadata(payload);
                    }
                }
                ServerEvent::Unpublish { stream_id } => {
                    if self
                        .ingest
                        .as_ref()
                        .is_some_and(|i| i.stream_id == stream_id)
                    {
                        let ingest = self.ingest.take();
                        if let Some(i) = &ingest {
                            tracing::info!(peer = %self.peer, stream = %i.name(), "publisher stopped");
                        }
                    }
                }
                ServerEvent::PlayStop { stream_id } => {
                    if self
                        .playback
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id)
                    {
                        self.playback = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn refuse_publish(&mut self, stream_id: u32, code: &str, why: &str) -> Result<(), ConnError> {
        self.ctx.stats.publish_refused.inc();
        tracing::info!(peer = %self.peer, code, "publish refused: {why}");
        self.session.reject_publish(stream_id, code, why)?;
        Ok(())
    }

    async fn on_publish(&mut self, stream_id: u32, raw_name: &str) -> Result<(), ConnError> {
        let Some(app) = self.app.clone() else {
            return Ok(());
        };
        let (name, query) = split_name(raw_name);
        if self.ingest.is_some() {
            return self.refuse_publish(
                stream_id,
                "NetStream.Publish.BadName",
                "this connection already publishes a stream",
            );
        }
        // The same rules (and the same stream record and lease) as every other ingest protocol.
        let admitted = match self
            .ctx
            .publishing
            .admit(&app, name, access::token_in(query))
            .await
        {
            Ok(a) => a,
            Err(refused) => {
                let code = match refused {
                    PublishRefused::Edge
                    | PublishRefused::Full(_)
                    | PublishRefused::MemoryFull(_) => "NetStream.Publish.Denied",
                    _ => "NetStream.Publish.BadName",
                };
                tracing::info!(peer = %self.peer, code, "publish refused: {refused}");
                self.session
                    .reject_publish(stream_id, code, &refused.to_string())?;
                return Ok(());
            }
        };
        self.session.accept_publish(stream_id)?;
        tracing::info!(peer = %self.peer, stream = %format!("{app}/{name}"), "publishing");
        self.ingest = Some(Ingest::new(stream_id, admitted));
        Ok(())
    }

    async fn on_play(&mut self, stream_id: u32, raw_name: &str) -> Result<(), ConnError> {
        let Some(app) = self.app.clone() else {
            return Ok(());
        };
        let (name, query) = split_name(raw_name);
        let key = HubKey::from_player_name(&app, name);
        if let Some(a) = self.ctx.config.app(&app)
            && let Err(why) = access::may_play(
                &a.security.play,
                &key.stream.stream_id,
                access::token_in(query),
            )
        {
            tracing::info!(peer = %self.peer, stream = %key, reason = %why, "play refused");
            self.session.reject_play(
                stream_id,
                "NetStream.Play.Failed",
                &format!("not allowed to play {key}: {why}"),
            )?;
            return Ok(());
        }
        if let Some(puller) = &self.ctx.puller
            && !self.ctx.hubs.get(&key).is_some_and(|h| h.is_live())
            && let Err(e) = puller.ensure(&key.stream, self.ctx.config.hls.wait).await
        {
            tracing::debug!(stream = %key, "not served: {e}");
        }
        let Some(hub) = self.ctx.hubs.get(&key).filter(|h| h.is_live()) else {
            tracing::info!(peer = %self.peer, stream = %key, "play refused: stream not found");
            self.session.reject_play(
                stream_id,
                "NetStream.Play.StreamNotFound",
                &format!("no live stream {key}"),
            )?;
            return Ok(());
        };
        self.session.accept_play(stream_id)?;
        tracing::info!(peer = %self.peer, stream = %key, "playing");
        self.playback = Some(Playback::new(
            stream_id,
            hub.subscribe(SubscriberKind::Rtmp),
        ));
        Ok(())
    }
}

/// Writes every piece of `chain` in order with vectored writes; returns the bytes written.
async fn write_chain(wr: &mut OwnedWriteHalf, chain: &mut VecDeque<Bytes>) -> std::io::Result<u64> {
    let mut written = 0u64;
    while !chain.is_empty() {
        let mut slices = [IoSlice::new(&[]); WRITE_IOVECS];
        let mut count = 0;
        for (slot, piece) in slices.iter_mut().zip(chain.iter()) {
            *slot = IoSlice::new(piece);
            count += 1;
        }
        let n = wr
            .write_vectored(slices.get(..count).unwrap_or_default())
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        written += n as u64;
        let mut left = n;
        while left > 0 {
            let Some(front) = chain.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                chain.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(written)
}

/// A read, within `limit` if there is one; `None` when the limit passed first.
async fn read_within(
    rd: &mut OwnedReadHalf,
    buf: &mut [u8],
    limit: Option<Duration>,
) -> Option<std::io::Result<usize>> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, rd.read(buf)).await.ok(),
        None => Some(rd.read(buf).await),
    }
}

async fn next_event(playback: &mut Option<Playback>) -> Option<HubEvent> {
    match playback {
        Some(p) => p.sub.recv().await,
        None => std::future::pending().await,
    }
}

async fn lease_lost(ingest: &mut Option<Ingest>) {
    match ingest.as_mut().and_then(|i| i.lease.as_mut()) {
        Some(lease) => lease.lost().await,
        None => std::future::pending().await,
    }
}

/// `name?query` -> (`name`, `query`).
fn split_name(raw: &str) -> (&str, &str) {
    raw.split_once('?').unwrap_or((raw, ""))
}
