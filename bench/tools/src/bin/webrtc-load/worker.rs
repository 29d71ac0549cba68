//! A worker thread: one `mio` poll over many viewers' UDP sockets. Each readable socket is
//! drained datagram by datagram into its viewer's `Rtc`, whose outputs (datagrams to send,
//! events) are drained at once; every few ms the viewers whose str0m timeout has passed get an
//! `Input::Timeout`. No task or wake-up per viewer: the cost per viewer is str0m's own (SRTP
//! decryption, ICE consent, RTCP) and the syscalls.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Output};

use crate::report::{Histogram, ViewerReport};
use crate::viewer::{Viewer, Window};
use crate::whep::Negotiated;

/// How often the viewers' str0m timeouts are checked (their timers are RTCP, ICE consent and
/// NACK: a few ms late is harmless).
const SCAN: Duration = Duration::from_millis(5);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// What a worker hands back: its viewers' reports and the latencies of all their frames
/// (video, audio; 1 ms buckets).
pub struct Done {
    pub reports: Vec<ViewerReport>,
    pub video: Histogram,
    pub audio: Histogram,
}

/// Runs viewers handed over on `joining` until `stop`; then ends their sessions.
pub fn run(joining: Receiver<(usize, Negotiated)>, window: Window, stop: Arc<AtomicBool>) -> Done {
    let mut global = (Histogram::new(1.0, 10_000), Histogram::new(1.0, 10_000));
    let mut viewers: Vec<Viewer> = Vec::new();
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("webrtc-load: poll: {e}");
            return Done {
                reports: Vec::new(),
                video: global.0,
                audio: global.1,
            };
        }
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut next_scan = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while let Ok((id, n)) = joining.try_recv() {
            if let Some(mut v) = adopt(&poll, id, n, viewers.len()) {
                drive(&mut v, &window, &mut global);
                viewers.push(v);
            }
        }
        let wait = next_scan
            .saturating_duration_since(Instant::now())
            .min(SCAN);
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != ErrorKind::Interrupted
        {
            eprintln!("webrtc-load: poll: {e}");
            break;
        }
        for event in &events {
            let Some(v) = viewers.get_mut(event.token().0) else {
                continue;
            };
            read(v, &mut buf, &window, &mut global);
        }
        let now = Instant::now();
        if now >= next_scan {
            for v in viewers
                .iter_mut()
                .filter(|v| !v.done && v.next_timeout <= now)
            {
                if let Err(e) = v.rtc.handle_input(Input::Timeout(now)) {
                    v.fail(now, format!("str0m: {e}"));
                    continue;
                }
                drive(v, &window, &mut global);
            }
            next_scan = now + SCAN;
        }
    }
    for v in viewers.iter_mut().filter(|v| !v.done) {
        // Best effort: DTLS close_notify and RTCP BYE, so the server ends the session now.
        v.rtc.disconnect();
        while let Ok(Output::Transmit(t)) = v.rtc.poll_output() {
            if v.socket.send_to(&t.contents, t.destination).is_err() {
                break;
            }
        }
    }
    Done {
        reports: viewers.iter().map(|v| v.report(&window)).collect(),
        video: global.0,
        audio: global.1,
    }
}

/// Registers a negotiated viewer's socket under `token`.
fn adopt(poll: &Poll, id: usize, n: Negotiated, token: usize) -> Option<Viewer> {
    let Negotiated { session, socket } = n;
    if let Err(e) = socket.set_nonblocking(true) {
        eprintln!("webrtc-load: viewer {id}: {e}");
        return None;
    }
    let mut socket = mio::net::UdpSocket::from_std(socket);
    if let Err(e) = poll
        .registry()
        .register(&mut socket, Token(token), Interest::READABLE)
    {
        eprintln!("webrtc-load: viewer {id}: register: {e}");
        return None;
    }
    Some(Viewer::new(id, session, socket))
}

/// Feeds every datagram waiting on a viewer's socket to its `Rtc`.
fn read(v: &mut Viewer, buf: &mut [u8], window: &Window, global: &mut (Histogram, Histogram)) {
    loop {
        let (n, source) = match v.socket.recv_from(buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if v.done {
            continue;
        }
        let now = Instant::now();
        let Some(bytes) = buf.get(..n) else { continue };
        let Ok(r) = Receive::new(Protocol::Udp, source, v.local, bytes) else {
            continue;
        };
        if let Err(e) = v.rtc.handle_input(Input::Receive(now, r)) {
            v.fail(now, format!("str0m: {e}"));
            continue;
        }
        drive(v, window, global);
    }
}

/// Drains a viewer's `Rtc` outputs until it names its next timeout.
fn drive(v: &mut Viewer, window: &Window, global: &mut (Histogram, Histogram)) {
    let now = Instant::now();
    loop {
        match v.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                v.next_timeout = t;
                break;
            }
            Ok(Output::Transmit(t)) => {
                // A full socket buffer drops the datagram, as a network would.
                let _ = v.socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(e)) => v.on_event(e, now, window, global),
            Err(e) => {
                v.fail(now, format!("str0m: {e}"));
                break;
            }
        }
    }
    if !v.rtc.is_alive() {
        v.fail(now, "session closed".into());
    }
}
