//! An origin's relay listener: authenticates edges, then serves their subscriptions from the
//! origin's hubs.
//!
//! A subscription covers a stream and all its renditions (the hubs of its family, discovered
//! as they appear). Each rendition has a forwarder task: it subscribes to the hub like
//! any viewer (so the hub's slow-subscriber policy protects the origin from a slow edge), sends
//! descriptions on the subscription's control stream, and opens one unidirectional stream per
//! unit (an HLS segment, or a GOP while there are no segments), numbered: newer units get a
//! higher send priority, so a backlog never delays the live edge, and the edge puts them back
//! in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    AUTH_TIMEOUT, GaugeGuard, MAX_EDGE_STREAMS, MessageReader, RelayIoError, Side, auth_mac,
    auth_ok, send, server_config,
};
use crate::config::Secret;
use crate::media::frame::TrackKind;
use crate::media::hls::SegmentCopy;
use crate::media::hub::{Hub, HubEvent, HubKey, Hubs, SubscriberKind};
use crate::runtime::Shutdown;
use streamfleet_proto::relay::{Kind, MAX_MESSAGE, MAX_RENDITIONS, Message, close};

/// How often a subscription looks for renditions that appeared (a transcoder starting).
const RENDITION_SCAN: Duration = Duration::from_millis(250);
/// Audio-only streams: a new GOP stream every second.
const AUDIO_GOP_MS: u64 = 1000;
/// Connections still proving the cluster secret (each for at most [`AUTH_TIMEOUT`]) at once;
/// more are refused until some finish.
pub const MAX_PENDING: usize = 64;

/// Counters of the relay listener.
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    /// Authenticated edge connections now.
    pub edges: Gauge,
    /// Subscriptions served now.
    pub subscriptions: Gauge,
    /// Peers refused for not knowing the secret.
    pub auth_failures: Counter,
    /// Connections refused because [`MAX_PENDING`] peers were still proving themselves.
    pub refused: Counter,
    /// Media bytes (frame messages) sent to edges.
    pub egress_bytes: Counter,
}

impl ServerMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "relay_edges",
            "Edges connected to this origin's relay",
            self.edges.clone(),
        );
        registry.register(
            "relay_served_subscriptions",
            "Stream subscriptions served to edges",
            self.subscriptions.clone(),
        );
        registry.register(
            "relay_egress_bytes",
            "Media bytes (frame messages) sent to edges",
            self.egress_bytes.clone(),
        );
        registry.register(
            "relay_auth_failures",
            "Relay peers refused: they did not know the cluster secret",
            self.auth_failures.clone(),
        );
        registry.register(
            "relay_pending_refused",
            "Relay connections refused: too many peers were still proving the cluster secret",
            self.refused.clone(),
        );
    }
}

struct Ctx {
    hubs: Arc<Hubs>,
    secret: Secret,
    metrics: ServerMetrics,
    shutdown: Shutdown,
}

/// The QUIC endpoint of an origin's relay, on an already bound UDP socket: made while the
/// node binds its listeners, so a relay that cannot start stops the process before anything is
/// announced.
pub fn endpoint(socket: std::net::UdpSocket) -> Result<quinn::Endpoint, RelayIoError> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config()?),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(RelayIoError::Endpoint)
}

/// Serves edges on `endpoint` until the node stops.
pub fn serve(
    endpoint: quinn::Endpoint,
    hubs: Arc<Hubs>,
    secret: Secret,
    metrics: ServerMetrics,
    shutdown: Shutdown,
) {
    let ctx = Arc::new(Ctx {
        hubs,
        secret,
        metrics,
        shutdown: shutdown.clone(),
    });
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING));
    shutdown.clone().spawn_service(async move {
        loop {
            tokio::select! {
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    // A source address is proved by a Retry round trip before any state is
                    // kept for it (spoofed floods stop here).
                    if !incoming.remote_address_validated() {
                        if let Err(e) = incoming.retry() {
                            tracing::debug!("relay retry not sent: {e}");
                        }
                        continue;
                    }
                    let Ok(permit) = pending.clone().try_acquire_owned() else {
                        ctx.metrics.refused.inc();
                        incoming.refuse();
                        continue;
                    };
                    let ctx = ctx.clone();
                    // Relay connections are background work: they end with the node, not the drain.
                    shutdown.spawn_service(async move {
                        let peer = incoming.remote_address();
                        if let Err(e) = serve_connection(ctx, incoming, permit).await {
                            tracing::info!(%peer, "relay connection ended: {e}");
                        }
                    });
                }
                () = shutdown.stopped() => break,
            }
        }
        endpoint.close(close::SHUTDOWN.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    });
}

async fn serve_connection(
    ctx: Arc<Ctx>,
    incoming: quinn::Incoming,
    pending: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), RelayIoError> {
    let peer = incoming.remote_address();
    let conn = tokio::time::timeout(AUTH_TIMEOUT, incoming)
        .await
        .map_err(|_| RelayIoError::Timeout)??;
    let authenticated = tokio::time::timeout(AUTH_TIMEOUT, authenticate(&ctx, &conn)).await;
    drop(pending);
    match authenticated {
        Ok(Ok(())) => {}
        Ok(Err(RelayIoError::AuthFailed)) | Err(_) => {
            ctx.metrics.auth_failures.inc();
            conn.close(close::AUTH_FAILED.into(), b"authentication failed");
            tracing::warn!(%peer, "relay peer refused: it did not prove it knows the cluster secret");
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
    }
    conn.set_max_concurrent_bi_streams(MAX_EDGE_STREAMS.into());
    let _edge = GaugeGuard::new(&ctx.metrics.edges);
    tracing::info!(%peer, "edge connected to the relay");
    loop {
        tokio::select! {
            stream = conn.accept_bi() => {
                let (send, recv) = match stream {
                    Ok(s) => s,
                    Err(quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                let ctx = ctx.clone();
                let conn = conn.clone();
                ctx.shutdown.clone().spawn_service(async move {
                    if let Err(e) = serve_subscription(ctx, conn, send, recv, peer).await {
                        tracing::debug!(%peer, "relay subscription ended: {e}");
                    }
                });
            }
            () = ctx.shutdown.stopped() => {
                conn.close(close::SHUTDOWN.into(), b"shutting down");
                return Ok(());
            }
        }
    }
}

/// Bytes of an encoded Auth message: its type, its one-byte length, the MAC.
pub const AUTH_MESSAGE_LEN: usize = 2 + streamfleet_proto::relay::MAC_LEN;

/// The edge opens the first stream and proves itself first, with exactly one Auth message;
/// then we prove ourselves.
async fn authenticate(ctx: &Ctx, conn: &quinn::Connection) -> Result<(), RelayIoError> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut exact = [0u8; AUTH_MESSAGE_LEN];
    recv.read_exact(&mut exact)
        .await
        .map_err(|_| RelayIoError::AuthFailed)?;
    let mut buf = bytes::BytesMut::from(&exact[..]);
    match Message::decode(&mut buf) {
        Ok(Some(Message::Auth { mac }))
            if buf.is_empty() && auth_ok(&ctx.secret, conn, Side::Client, &mac) => {}
        _ => return Err(RelayIoError::AuthFailed),
    }
    super::send(
        &mut send,
        &Message::Auth {
            mac: auth_mac(&ctx.secret, conn, Side::Server)?,
        },
    )
    .await?;
    let _ = send.finish();
    Ok(())
}

async fn serve_subscription(
    ctx: Arc<Ctx>,
    conn: quinn::Connection,
    mut control: quinn::SendStream,
    recv: quinn::RecvStream,
    peer: SocketAddr,
) -> Result<(), RelayIoError> {
    let subscription = control.id().index();
    let mut reader = MessageReader::new(recv);
    let (app, stream) = match tokio::time::timeout(AUTH_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(Message::Subscribe { app, stream }))) => (app, stream),
        Ok(Ok(_)) => {
            return Err(RelayIoError::Protocol(
                streamfleet_proto::relay::RelayError::BadField("expected Subscribe"),
            ));
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(RelayIoError::Timeout),
    };
    let source = HubKey::source(&app, &stream);
    if !ctx.hubs.get(&source).is_some_and(|h| h.is_live()) {
        send(&mut control, &Message::NotFound).await?;
        let _ = control.finish();
        return Ok(());
    }
    let _served = GaugeGuard::new(&ctx.metrics.subscriptions);
    tracing::info!(%peer, stream = %source, "edge subscribed");
    let (ctrl_tx, mut ctrl_rx) = mpsc::channel::<Message>(64);
    let (failed_tx, mut failed_rx) = mpsc::channel::<RelayIoError>(MAX_RENDITIONS as usize);
    let mut forwarders: HashMap<HubKey, JoinHandle<()>> = HashMap::new();
    let mut next_index: u8 = 0;
    let mut scan = tokio::time::interval(RENDITION_SCAN);
    let result = loop {
        tokio::select! {
            _ = scan.tick() => {
                forwarders.retain(|_, task| !task.is_finished());
                for hub in ctx.hubs.family(&source.stream) {
                    if !hub.is_live() || forwarders.contains_key(hub.key()) || next_index >= MAX_RENDITIONS {
                        continue;
                    }
                    let (key, index) = (hub.key().clone(), next_index);
                    next_index += 1;
                    let (conn, ctrl, failed) = (conn.clone(), ctrl_tx.clone(), failed_tx.clone());
                    let egress = ctx.metrics.egress_bytes.clone();
                    forwarders.insert(key, tokio::spawn(async move {
                        if let Err(e) = forward(hub, index, subscription, conn, ctrl, egress).await {
                            let _ = failed.try_send(e);
                        }
                    }));
                }
            }
            Some(msg) = ctrl_rx.recv() => {
                if let Err(e) = send(&mut control, &msg).await {
                    break Err(e);
                }
            }
            Some(e) = failed_rx.recv() => break Err(e),
            r = reader.next() => match r {
                // The edge ended the subscription.
                Ok(None) => break Ok(()),
                Ok(Some(_)) => break Err(RelayIoError::Protocol(streamfleet_proto::relay::RelayError::BadField("unexpected message on a subscription"))),
                Err(e) => break Err(e),
            },
            () = ctx.shutdown.stopped() => break Ok(()),
        }
    };
    for (_, task) in forwarders {
        task.abort();
    }
    if result.is_err() {
        // Tell the edge to resubscribe.
        let _ = control.reset(1u32.into());
    } else {
        let _ = control.finish();
    }
    tracing::info!(%peer, stream = %source, "edge unsubscribed");
    result
}

/// Forwards one rendition hub to the edge.
///
/// The frames go in units, one QUIC stream each, numbered from 0: one HLS segment per unit
/// (a subscriber starts at a segment's first frame), or one GOP while the stream has no segment
/// decisions. A description that changes within a publish session goes in-band on the open
/// unit, so the edge applies it at the same frame; the publisher's leaving too, after the
/// unit's last frame.
async fn forward(
    hub: Arc<Hub>,
    index: u8,
    subscription: u64,
    conn: quinn::Connection,
    ctrl: mpsc::Sender<Message>,
    egress: Counter,
) -> Result<(), RelayIoError> {
    let mut sub = hub.subscribe(SubscriberKind::Relay);
    let id = hub.key().rendition;
    // Taken after subscribing: the window holds at least every segment before the one the
    // subscription starts in.
    let mut window = hub.hls_view();
    drop(hub);
    let mut unit: Option<quinn::SendStream> = None;
    let mut units = 0u64;
    let mut generation = 0;
    let mut has_video = false;
    // The stream's frames carry segment decisions: units follow the segments.
    let mut segmented = false;
    let mut unit_start = 0u64;
    let mut priority = 0i32;
    let closed = |_| RelayIoError::Eof;
    while let Some(event) = sub.recv().await {
        if sub.skipped()
            && let Some(mut cut) = unit.take()
        {
            // The edge was too slow and missed frames of the open unit: it must not serve
            // what it got of it. The event is the first after the gap (a segment start).
            let _ = cut.reset(close::UNIT_CUT.into());
        }
        match event {
            HubEvent::Start {
                info,
                generation: g,
            } => {
                let new_session = g != generation;
                generation = g;
                has_video = info.video.is_some();
                let msg = Message::Info {
                    rendition: index,
                    id,
                    generation,
                    video: info.video.as_ref().map(|v| v.sequence_header.clone()),
                    audio: info.audio.as_ref().map(|a| a.sequence_header.clone()),
                    metadata: info.metadata.clone(),
                };
                if new_session && let Some(mut old) = unit.take() {
                    let _ = old.finish();
                }
                match unit.as_mut() {
                    Some(open) => {
                        send(open, &msg).await?;
                    }
                    None => ctrl.send(msg).await.map_err(closed)?,
                }
            }
            HubEvent::Frame(frame) => {
                segmented |= frame.segment.is_some();
                let starts_unit = if segmented {
                    frame.segment.is_some()
                } else if has_video {
                    frame.kind == TrackKind::Video && frame.keyframe
                } else {
                    unit.is_none() || frame.dts >= unit_start + AUDIO_GOP_MS
                };
                if starts_unit {
                    if let Some(mut old) = unit.take() {
                        let _ = old.finish();
                    }
                    let mut stream = conn.open_uni().await?;
                    // Newer units first: a backlog of old ones never delays the live edge.
                    priority = priority.wrapping_add(1);
                    let _ = stream.set_priority(priority);
                    send(
                        &mut stream,
                        &Message::GopHeader {
                            subscription,
                            rendition: index,
                            generation,
                            sequence: units,
                        },
                    )
                    .await?;
                    if let (Some(view), Some(start)) = (window.take(), frame.segment.as_deref()) {
                        // Room for the message's other fields.
                        let fits = MAX_MESSAGE - 64;
                        for copy in view.copies_before(start.sequence, fits) {
                            match send(&mut stream, &segment_message(copy)).await {
                                Ok(n) => {
                                    egress.inc_by(n as u64);
                                }
                                // The edge gave the unit up: its frames will find that out.
                                Err(RelayIoError::Write(quinn::WriteError::Stopped(_))) => break,
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    units += 1;
                    unit = Some(stream);
                    unit_start = frame.dts;
                }
                let Some(stream) = unit.as_mut() else {
                    continue;
                };
                let msg = Message::Frame {
                    kind: if frame.kind == TrackKind::Video {
                        Kind::Video
                    } else {
                        Kind::Audio
                    },
                    dts: frame.dts,
                    keyframe: frame.keyframe,
                    origin_us: frame.published_us,
                    segment: frame.segment.as_deref().copied(),
                    part: frame.part,
                    body: frame.body,
                };
                match send(stream, &msg).await {
                    Ok(n) => {
                        egress.inc_by(n as u64);
                    }
                    // The edge gave this unit up as late: wait for the next one.
                    Err(RelayIoError::Write(quinn::WriteError::Stopped(_))) => unit = None,
                    Err(e) => return Err(e),
                }
            }
            HubEvent::Stop { segment_end } => {
                let stop = Message::Stop {
                    rendition: index,
                    segment_end,
                };
                // After the unit's last frame, on its stream, so the edge ends where we did;
                // on the subscription's stream when no unit is open.
                let in_band = match unit.take() {
                    Some(mut open) => {
                        let sent = send(&mut open, &stop).await.is_ok();
                        let _ = open.finish();
                        sent
                    }
                    None => false,
                };
                if !in_band {
                    ctrl.send(stop).await.map_err(closed)?;
                }
            }
        }
    }
    // The hub dropped us for staying behind: the edge must resubscribe.
    Err(RelayIoError::Timeout)
}

/// A segment of the origin's window as the relay carries it.
fn segment_message(c: SegmentCopy) -> Message {
    Message::Segment {
        sequence: c.sequence,
        discontinuity_sequence: c.discontinuity_sequence,
        discontinuity: c.discontinuity,
        program_date_time: c.program_date_time,
        duration_ms: c.duration_ms,
        target_duration: c.target_duration,
        data: c.data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::hub::HubMetrics;
    use std::time::Duration;

    const SECRET: &str = "relay-test-secret-0123";

    /// An origin relay on loopback and a client endpoint.
    fn relay() -> (SocketAddr, quinn::Endpoint, Shutdown) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let shutdown = Shutdown::new();
        serve(
            endpoint(socket).unwrap(),
            Arc::new(Hubs::new(HubMetrics::default(), None)),
            Secret::new(SECRET),
            ServerMetrics::default(),
            shutdown.clone(),
        );
        let client = super::super::client::endpoint("127.0.0.1".parse().unwrap()).unwrap();
        (addr, client, shutdown)
    }

    async fn connect(client: &quinn::Endpoint, addr: SocketAddr) -> quinn::Connection {
        client
            .connect(addr, "streamfleet-relay")
            .unwrap()
            .await
            .unwrap()
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn before_auth_a_peer_gets_one_stream_and_no_unidirectional_ones() {
        let (addr, client, _shutdown) = relay();
        let conn = connect(&client, addr).await;
        assert!(
            tokio::time::timeout(SHORT, conn.open_uni()).await.is_err(),
            "no unidirectional stream before auth"
        );
        let (mut auth_send, auth_recv) = conn.open_bi().await.unwrap();
        assert!(
            tokio::time::timeout(SHORT, conn.open_bi()).await.is_err(),
            "one bidirectional stream before auth"
        );
        // The proof; then the origin's; then subscriptions may open many streams.
        let mac = auth_mac(&Secret::new(SECRET), &conn, Side::Client).unwrap();
        send(&mut auth_send, &Message::Auth { mac }).await.unwrap();
        let mut reader = MessageReader::new(auth_recv);
        let answer = reader.next().await.unwrap();
        assert!(matches!(answer, Some(Message::Auth { .. })), "{answer:?}");
        let mut streams = Vec::new();
        for _ in 0..16 {
            let s = tokio::time::timeout(Duration::from_secs(5), conn.open_bi())
                .await
                .expect("streams granted after auth")
                .unwrap();
            streams.push(s);
        }
    }

    #[tokio::test]
    async fn anything_but_one_exact_auth_message_is_refused() {
        let (addr, client, _shutdown) = relay();
        // The right size, the wrong bytes.
        let conn = connect(&client, addr).await;
        let (mut s, _r) = conn.open_bi().await.unwrap();
        s.write_all(&[0x01; AUTH_MESSAGE_LEN]).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .unwrap();
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == close::AUTH_FAILED.into()),
            "{closed:?}"
        );
        // A flood on the auth stream stalls on the tiny window and is closed at the deadline.
        let conn = connect(&client, addr).await;
        let (mut s, _r) = conn.open_bi().await.unwrap();
        let big = vec![0u8; 1 << 20];
        let wrote = tokio::time::timeout(Duration::from_secs(2), s.write_all(&big)).await;
        assert!(
            wrote.is_err() || wrote.is_ok_and(|r| r.is_err()),
            "1 MiB before auth is not taken"
        );
    }

    #[tokio::test]
    async fn peers_still_proving_themselves_are_capped() {
        let (addr, client, _shutdown) = relay();
        let mut held = Vec::new();
        for _ in 0..MAX_PENDING {
            held.push(connect(&client, addr).await);
        }
        let refused = client.connect(addr, "streamfleet-relay").unwrap().await;
        assert!(refused.is_err(), "{refused:?}");
    }
}
