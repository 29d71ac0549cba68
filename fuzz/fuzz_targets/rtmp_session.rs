//! Arbitrary bytes into a ServerSession that accepts everything (and plays media back to any
//! player). An odd first byte puts a valid plain handshake in front, so the fuzzer spends its
//! time on chunks and commands.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::rtmp::handshake::{HANDSHAKE_SIZE, RANDOM_LEN};
use streamfleet_proto::rtmp::session::{ServerConfig, ServerEvent, ServerSession};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let config = ServerConfig {
        record_input: Some(64 * 1024),
        ..ServerConfig::default()
    };
    let mut session = ServerSession::new(config, 0, &[1; RANDOM_LEN]);
    if mode & 1 == 1 {
        let mut handshake = vec![3u8];
        handshake.resize(1 + 2 * HANDSHAKE_SIZE, 0);
        if session.handle_input(&handshake).is_err() {
            return;
        }
    }
    let step = usize::from(mode >> 1).max(1) * 8;
    let mut output = BytesMut::new();
    for piece in data.chunks(step) {
        if session.handle_input(piece).is_err() {
            return;
        }
        while let Some(event) = session.poll_event() {
            let answered = match event {
                ServerEvent::Connect { .. } => session.accept_connect(),
                ServerEvent::Publish { stream_id, .. } => session.accept_publish(stream_id),
                ServerEvent::Play { stream_id, .. } => session.accept_play(stream_id).and_then(|()| {
                    let frame = Bytes::from_static(&[0x17, 0, 0, 0, 0]);
                    session.send_video(stream_id, 0, &frame)?;
                    session.send_audio(stream_id, 0, &frame)?;
                    session.send_metadata(stream_id, 0, &frame)
                }),
                _ => Ok(()),
            };
            if answered.is_err() {
                return;
            }
        }
        session.take_output(&mut output);
        output.clear();
    }
    let _ = session.downstream_state();
    let _ = session.take_recorded_input();
});
