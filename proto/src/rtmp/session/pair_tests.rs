//! Socket-free pair harness: a [`ClientSession`] and a [`ServerSession`] talking in memory.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::chunk::ChunkedBody;
use crate::rtmp::handshake::{HandshakeMode, RANDOM_LEN};
use crate::rtmp::message::{Message, UserControl};

/// How the application answers server events in a test.
type Answer = fn(&mut ServerSession, &ServerEvent);

fn accept_all(server: &mut ServerSession, event: &ServerEvent) {
    match event {
        ServerEvent::Connect { .. } => server.accept_connect().unwrap(),
        ServerEvent::Publish { stream_id, .. } => server.accept_publish(*stream_id).unwrap(),
        ServerEvent::Play { stream_id, .. } => server.accept_play(*stream_id).unwrap(),
        _ => {}
    }
}

struct Pair {
    server: ServerSession,
    client: ClientSession,
    answer: Answer,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
    /// Every byte the client sent, for checking the recording.
    client_bytes: BytesMut,
}

impl Pair {
    fn new(server_config: ServerConfig, client_config: ClientConfig, answer: Answer) -> Pair {
        let mut pair = Pair {
            server: ServerSession::new(server_config, 100, &[7; RANDOM_LEN]),
            client: ClientSession::new(client_config, 200, &[9; RANDOM_LEN]),
            answer,
            server_events: Vec::new(),
            client_events: Vec::new(),
            client_bytes: BytesMut::new(),
        };
        pair.run();
        pair
    }

    fn connected(answer: Answer) -> Pair {
        let client = ClientConfig::new("live", "rtmp://localhost/live");
        let mut pair = Pair::new(ServerConfig::default(), client, answer);
        assert!(pair.client.is_connected());
        pair.drain();
        pair
    }

    /// Moves bytes both ways, answering server events, until nothing moves.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            if let Some(bytes) = self.client.poll_output() {
                self.client_bytes.extend_from_slice(&bytes);
                self.server.handle_input(&bytes).unwrap();
                moved = true;
            }
            while let Some(event) = self.server.poll_event() {
                (self.answer)(&mut self.server, &event);
                self.server_events.push(event);
                moved = true;
            }
            if let Some(bytes) = self.server.poll_output() {
                self.client.handle_input(&bytes).unwrap();
                moved = true;
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn drain(&mut self) -> (Vec<ServerEvent>, Vec<ClientEvent>) {
        (
            std::mem::take(&mut self.server_events),
            std::mem::take(&mut self.client_events),
        )
    }

    /// Creates a stream and returns its id.
    fn create_stream(&mut self) -> u32 {
        self.client.create_stream().unwrap();
        self.run();
        let (_, client) = self.drain();
        let created = client.iter().find_map(|e| match e {
            ClientEvent::StreamCreated { stream_id } => Some(*stream_id),
            _ => None,
        });
        created.expect("createStream answered")
    }
}

fn status_codes(events: &[ClientEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status { level, code, .. } => Some((level.clone(), code.clone())),
            _ => None,
        })
        .collect()
}

fn frame(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

#[test]
fn connect_reports_app_and_gets_success() {
    let client = ClientConfig::new("live", "rtmp://localhost:1935/live");
    let pair = Pair::new(ServerConfig::default(), client, accept_all);
    assert!(matches!(
        &pair.server_events[..2],
        [
            ServerEvent::HandshakeDone { mode: HandshakeMode::Plain },
            ServerEvent::Connect { app, tc_url: Some(tc), .. },
        ] if app == "live" && tc == "rtmp://localhost:1935/live"
    ));
    let connected = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::Connected { information } => Some(information),
        _ => None,
    });
    let information = connected.expect("connected");
    assert_eq!(
        information.property("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        information.property("objectEncoding"),
        Some(&Amf0Value::Number(0.0))
    );
    // onBWDone follows the result.
    assert!(
        pair.client_events.iter().any(
            |e| matches!(e, ClientEvent::Command { command, .. } if command.name == "onBWDone")
        )
    );
}

#[test]
fn digest_handshake_between_sessions() {
    let mut client = ClientConfig::new("live", "rtmp://localhost/live");
    client.digest_handshake = true;
    let pair = Pair::new(ServerConfig::default(), client, accept_all);
    assert!(matches!(
        pair.server_events[0],
        ServerEvent::HandshakeDone {
            mode: HandshakeMode::Digest(_)
        }
    ));
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        ClientEvent::HandshakeDone(done) if done.s1_digest_valid && done.s2_digest_valid
    )));
    assert!(pair.client.is_connected());
}

#[test]
fn publish_media_and_unpublish() {
    let mut pair = Pair::connected(accept_all);
    pair.client.release_stream("key?token=1").unwrap();
    pair.client.fc_publish("key?token=1").unwrap();
    let stream_id = pair.create_stream();
    assert_eq!(stream_id, 1);
    pair.client
        .publish(stream_id, "key?token=1", PublishKind::Live)
        .unwrap();
    pair.run();
    let (server, client) = pair.drain();
    assert_eq!(
        server,
        vec![ServerEvent::Publish {
            stream_id: 1,
            name: "key?token=1".into(),
            kind: PublishKind::Live
        }]
    );
    assert_eq!(
        status_codes(&client),
        vec![("status".into(), "NetStream.Publish.Start".into())]
    );

    let metadata = Amf0Value::EcmaArray(vec![
        ("width".into(), Amf0Value::Number(1280.0)),
        ("encoder".into(), Amf0Value::string("obs")),
    ]);
    pair.client.send_metadata(1, metadata.clone()).unwrap();
    let keyframe = frame(10_000, 1); // spans three 4096-byte chunks
    let audio = frame(300, 2);
    let late = 0x0100_0000 + 40; // past the extended-timestamp boundary
    pair.client.send_video(1, 0, &keyframe).unwrap();
    pair.client.send_audio(1, 0, &audio).unwrap();
    pair.client.send_audio(1, 23, &audio).unwrap();
    pair.client.send_video(1, late, &keyframe).unwrap();
    pair.run();
    let (server, _) = pair.drain();
    let expected_metadata = amf0::encode_all([&Amf0Value::string("onMetaData"), &metadata]);
    assert_eq!(
        server,
        vec![
            ServerEvent::Metadata {
                stream_id: 1,
                timestamp: 0,
                payload: expected_metadata.freeze()
            },
            ServerEvent::Video {
                stream_id: 1,
                timestamp: 0,
                payload: keyframe.clone()
            },
            ServerEvent::Audio {
                stream_id: 1,
                timestamp: 0,
                payload: audio.clone()
            },
            ServerEvent::Audio {
                stream_id: 1,
                timestamp: 23,
                payload: audio.clone()
            },
            ServerEvent::Video {
                stream_id: 1,
                timestamp: late,
                payload: keyframe
            },
        ]
    );

    pair.client.fc_unpublish("key?token=1").unwrap();
    pair.client.delete_stream(1).unwrap();
    pair.run();
    let (server, _) = pair.drain();
    assert_eq!(server, vec![ServerEvent::Unpublish { stream_id: 1 }]);
}

#[test]
fn play_gets_status_sequence_and_media() {
    let mut pair = Pair::connected(accept_all);
    let stream_id = pair.create_stream();
    pair.client.play(stream_id, "key").unwrap();
    pair.run();
    let (server, client) = pair.drain();
    assert_eq!(
        server,
        vec![ServerEvent::Play {
            stream_id: 1,
            name: "key".into(),
            start: -2.0,
            duration: -1.0,
            reset: true
        }]
    );
    assert_eq!(
        client.first(),
        Some(&ClientEvent::UserControl(UserControl::StreamBegin(1)))
    );
    assert_eq!(
        status_codes(&client),
        vec![
            ("status".into(), "NetStream.Play.Reset".into()),
            ("status".into(), "NetStream.Play.Start".into()),
            (String::new(), "NetStream.Data.Start".into()),
        ]
    );
    assert!(client.iter().any(|e| matches!(
        e,
        ClientEvent::Data { values, .. } if values.first().and_then(Amf0Value::as_str) == Some("|RtmpSampleAccess")
    )));

    let metadata = amf0::encode_all([
        &Amf0Value::string("onMetaData"),
        &Amf0Value::object([("width", Amf0Value::Number(640.0))]),
    ])
    .freeze();
    let video = frame(9000, 3);
    let audio = frame(200, 4);
    pair.server.send_metadata(1, 0, &metadata).unwrap();
    pair.server.send_video(1, 0, &video).unwrap();
    pair.server.send_audio(1, 0, &audio).unwrap();
    let mut wire = BytesMut::new();
    pair.server.take_output(&mut wire);
    pair.server.send_audio(1, 46, &audio).unwrap();
    pair.server.take_output(&mut wire);
    pair.client.handle_input(&wire).unwrap();
    pair.run();
    let (_, client) = pair.drain();
    assert_eq!(
        client,
        vec![
            ClientEvent::Data {
                stream_id: 1,
                timestamp: 0,
                values: amf0::decode_all(&metadata).unwrap()
            },
            ClientEvent::Video {
                stream_id: 1,
                timestamp: 0,
                payload: video
            },
            ClientEvent::Audio {
                stream_id: 1,
                timestamp: 0,
                payload: audio.clone()
            },
            ClientEvent::Audio {
                stream_id: 1,
                timestamp: 46,
                payload: audio
            },
        ]
    );

    pair.client.close_stream(1).unwrap();
    pair.run();
    assert_eq!(pair.drain().0, vec![ServerEvent::PlayStop { stream_id: 1 }]);
    assert!(pair.server.send_video(1, 80, &frame(10, 0)).is_err());
}

/// A connected client playing `key` on message stream 1, its setup events drained.
fn playing() -> Pair {
    let mut pair = Pair::connected(accept_all);
    let stream_id = pair.create_stream();
    pair.client.play(stream_id, "key").unwrap();
    pair.run();
    pair.drain();
    pair
}

#[test]
fn chunked_frames_are_shared_by_players_without_a_copy() {
    let mut players = [playing(), playing()];
    let chunk_size = players[0].server.outgoing_chunk_size();
    let video = ChunkedBody::new(chunk_size, CSID_VIDEO, frame(9000, 3)).unwrap();
    let audio = ChunkedBody::new(chunk_size, CSID_AUDIO, frame(300, 4)).unwrap();
    let metadata = amf0::encode_all([&Amf0Value::string("onMetaData")]).freeze();
    for (n, pair) in players.iter_mut().enumerate() {
        // Each player has its own timeline (timestamps are rebased per player).
        let base = 1000 * n as u32;
        pair.server.send_metadata(1, base, &metadata).unwrap();
        pair.server.send_video_chunked(1, base, &video).unwrap();
        pair.server
            .send_audio_chunked(1, base + 10, &audio)
            .unwrap();
        pair.server
            .send_video_chunked(1, base + 33, &video)
            .unwrap();
        pair.server
            .send_video(1, base + 66, video.payload())
            .unwrap();
        pair.server
            .send_video_chunked(1, base + 99, &video)
            .unwrap();
        let mut pieces = Vec::new();
        while let Some(piece) = pair.server.poll_output() {
            pieces.push(piece);
        }
        let shared = |body: &ChunkedBody| {
            pieces
                .iter()
                .filter(|p| p.as_ptr() == body.wire().as_ptr() && p.len() == body.wire().len())
                .count()
        };
        assert_eq!(
            shared(&video),
            3,
            "every chunked video frame is the shared bytes"
        );
        assert_eq!(shared(&audio), 1);
        for piece in &pieces {
            pair.client.handle_input(piece).unwrap();
        }
        pair.run();
        let video_at = |timestamp| ClientEvent::Video {
            stream_id: 1,
            timestamp,
            payload: video.payload().clone(),
        };
        assert_eq!(
            pair.drain().1,
            vec![
                ClientEvent::Data {
                    stream_id: 1,
                    timestamp: base,
                    values: vec![Amf0Value::string("onMetaData")],
                },
                video_at(base),
                ClientEvent::Audio {
                    stream_id: 1,
                    timestamp: base + 10,
                    payload: audio.payload().clone(),
                },
                video_at(base + 33),
                video_at(base + 66),
                video_at(base + 99),
            ]
        );
    }
    // A body cut for another chunk stream is re-encoded, not sent with the wrong separators.
    let pair = &mut players[0];
    pair.server.send_audio_chunked(1, 2000, &video).unwrap();
    pair.run();
    assert_eq!(
        pair.drain().1,
        vec![ClientEvent::Audio {
            stream_id: 1,
            timestamp: 2000,
            payload: video.payload().clone(),
        }]
    );
    pair.client.close_stream(1).unwrap();
    pair.run();
    assert!(pair.server.send_video_chunked(1, 2100, &video).is_err());
}

#[test]
fn rejected_publish_gets_error_status_and_no_media_events() {
    fn reject_publish(server: &mut ServerSession, event: &ServerEvent) {
        match event {
            ServerEvent::Publish { stream_id, .. } => server
                .reject_publish(*stream_id, "NetStream.Publish.BadName", "Stream exists.")
                .unwrap(),
            other => accept_all(server, other),
        }
    }
    let mut pair = Pair::connected(reject_publish);
    let stream_id = pair.create_stream();
    pair.client
        .publish(stream_id, "taken", PublishKind::Live)
        .unwrap();
    pair.run();
    let (_, client) = pair.drain();
    assert_eq!(
        status_codes(&client),
        vec![("error".into(), "NetStream.Publish.BadName".into())]
    );
    pair.client
        .send_video(stream_id, 0, &frame(100, 0))
        .unwrap();
    pair.run();
    assert!(pair.drain().0.is_empty());
}

#[test]
fn rejected_play_gets_stream_not_found() {
    fn reject_play(server: &mut ServerSession, event: &ServerEvent) {
        match event {
            ServerEvent::Play { stream_id, .. } => server
                .reject_play(
                    *stream_id,
                    "NetStream.Play.StreamNotFound",
                    "No such stream.",
                )
                .unwrap(),
            other => accept_all(server, other),
        }
    }
    let mut pair = Pair::connected(reject_play);
    let stream_id = pair.create_stream();
    pair.client.play(stream_id, "missing").unwrap();
    pair.run();
    assert_eq!(
        status_codes(&pair.drain().1),
        vec![("error".into(), "NetStream.Play.StreamNotFound".into())]
    );
}

#[test]
fn rejected_connect_gets_error_and_closes() {
    fn reject(server: &mut ServerSession, event: &ServerEvent) {
        if let ServerEvent::Connect { .. } = event {
            server.reject_connect("No such application.").unwrap();
        }
    }
    let client = ClientConfig::new("nope", "rtmp://localhost/nope");
    let pair = Pair::new(ServerConfig::default(), client, reject);
    assert!(pair.server.is_closed());
    assert!(!pair.client.is_connected());
    let failed = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::ConnectFailed { information } => Some(information),
        _ => None,
    });
    assert_eq!(
        failed
            .and_then(|i| i.property("code"))
            .and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Rejected")
    );
}

#[test]
fn unknown_calls_get_error_only_with_a_transaction_id_and_pings_are_answered() {
    let mut pair = Pair::connected(accept_all);
    pair.client.call("fooBar", vec![]).unwrap();
    let silent = Message::Command(crate::rtmp::message::Command {
        name: "bazQux".into(),
        transaction_id: 0.0,
        command_object: Amf0Value::Null,
        args: vec![],
    });
    pair.client.send_message(3, 0, &silent).unwrap();
    let ping = Message::UserControl(UserControl::PingRequest(1234));
    pair.client.send_message(2, 0, &ping).unwrap();
    pair.run();
    let (_, client) = pair.drain();
    assert_eq!(client.len(), 2, "{client:?}");
    assert!(matches!(
        &client[0],
        ClientEvent::CallResult { call: Some(name), error: true, .. } if name == "fooBar"
    ));
    assert_eq!(
        client[1],
        ClientEvent::UserControl(UserControl::PingResponse(1234))
    );
}

#[test]
fn recorded_input_is_everything_after_the_handshake() {
    let config = ServerConfig {
        record_input: Some(64 * 1024),
        ..ServerConfig::default()
    };
    let client = ClientConfig::new("live", "rtmp://lb/live");
    let mut pair = Pair::new(config, client, accept_all);
    let stream_id = pair.create_stream();
    pair.client
        .publish(stream_id, "key", PublishKind::Live)
        .unwrap();
    pair.run();
    let recorded = pair.server.take_recorded_input().unwrap();
    // C0 + C1 + C2 precede what is recorded.
    assert_eq!(&recorded[..], &pair.client_bytes[1 + 2 * 1536..]);
    let downstream = pair.server.downstream_state();
    assert_eq!(downstream.chunk_size, 4096);
    assert!(downstream.csids.contains(&2) && downstream.csids.contains(&3));
}

#[test]
fn hostile_bytes_after_handshake_are_errors_not_panics() {
    let mut pair = Pair::connected(accept_all);
    // A type-1 header on a chunk stream the client never used.
    let err = pair
        .server
        .handle_input(&[0x4A, 0, 0, 0, 0, 0, 1, 8])
        .unwrap_err();
    assert!(matches!(err, SessionError::Chunk(_)));
}

#[test]
fn undecodable_data_message_is_dropped_not_fatal() {
    let mut pair = Pair::connected(accept_all);
    let stream_id = pair.create_stream();
    pair.client
        .publish(stream_id, "key", PublishKind::Live)
        .unwrap();
    pair.run();
    pair.drain();
    // A data message holding an AMF0 reference (0x07), which we do not decode.
    let odd = Message::Other {
        type_id: 18,
        payload: Bytes::from_static(&[0x07, 0x00, 0x01]),
    };
    pair.client.send_message(5, stream_id, &odd).unwrap();
    pair.client.send_audio(stream_id, 5, &frame(10, 0)).unwrap();
    pair.run();
    let (server, _) = pair.drain();
    assert_eq!(
        server,
        vec![ServerEvent::Audio {
            stream_id,
            timestamp: 5,
            payload: frame(10, 0)
        }]
    );
}

#[test]
fn input_after_a_question_waits_for_the_answer() {
    fn no_answer(_: &mut ServerSession, _: &ServerEvent) {}
    let client = ClientConfig::new("live", "rtmp://localhost/live");
    let config = ServerConfig {
        max_pending_input: 10_000,
        ..ServerConfig::default()
    };
    let mut pair = Pair::new(config, client, no_answer);
    assert!(pair.server.awaiting_answer());
    // The client pipelines createStream right behind connect (the session API would not).
    let create = Message::Command(crate::rtmp::message::Command {
        name: "createStream".into(),
        transaction_id: 2.0,
        command_object: Amf0Value::Null,
        args: vec![],
    });
    pair.client.send_message(3, 0, &create).unwrap();
    pair.run();
    assert!(!pair.client.is_connected());
    assert!(pair.server.awaiting_answer());
    // Answering resumes processing: connect result first, then the createStream result.
    pair.server.accept_connect().unwrap();
    pair.run();
    let (_, client) = pair.drain();
    let connected = client
        .iter()
        .position(|e| matches!(e, ClientEvent::Connected { .. }));
    let created = client.iter().position(|e| {
        matches!(e, ClientEvent::CallResult { error: false, values, .. } if values.get(1) == Some(&Amf0Value::Number(1.0)))
    });
    assert!(connected.unwrap() < created.unwrap(), "{client:?}");
}

#[test]
fn too_much_input_while_a_question_is_pending_is_an_error() {
    fn no_answer(_: &mut ServerSession, _: &ServerEvent) {}
    let client = ClientConfig::new("live", "rtmp://localhost/live");
    let config = ServerConfig {
        max_pending_input: 10_000,
        ..ServerConfig::default()
    };
    let mut pair = Pair::new(config, client, no_answer);
    assert!(pair.server.awaiting_answer());
    let err = pair.server.handle_input(&[0u8; 10_001]).unwrap_err();
    assert!(matches!(err, SessionError::InputOverflow(10_000)));
}
