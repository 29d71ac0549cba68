//! Ant Media Server's WebSocket JSON signalling for playing and publishing, as its browser client
//! `@antmedia/webrtc_adaptor` speaks it: the messages only (no sockets, no clock).
//!
//! Every message is a JSON object with a `command`. A viewer sends `play` {streamId, token};
//! the server offers at once (`takeConfiguration` type `offer`), the viewer answers with its
//! own `takeConfiguration` (type `answer`) and trickles `takeCandidate`s; `notification`s
//! (`play_started`, `play_finished`, `server_will_stop`) and `error`s (with a `definition`)
//! report what happened. [`parse`] reads one text message into a [`Request`];
//! [`Reply::to_json`] writes one answer.

use serde_json::{Map, Value, json};

/// Longest stream id accepted (Ant Media's ids are short; this bounds maps and logs).
pub const MAX_STREAM_ID: usize = 256;

/// What a viewer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Start playing `stream_id` (`play`).
    Play {
        /// The stream.
        stream_id: String,
        /// The play token (`token`); the adaptor sends `""` when there is none.
        token: Option<String>,
    },
    /// Publish `stream_id` from this socket (`publish`): the server answers `start`, the
    /// client then offers in `takeConfiguration` (type `offer`).
    Publish {
        /// The stream.
        stream_id: String,
        /// The publish token (`token`); the adaptor sends `""` when there is none.
        token: Option<String>,
    },
    /// End the session of `stream_id` (`stop`).
    Stop {
        /// The stream.
        stream_id: String,
    },
    /// The viewer's SDP (`takeConfiguration`); a player sends `type: "answer"`.
    TakeConfiguration {
        /// The stream.
        stream_id: String,
        /// `offer` or `answer`.
        kind: String,
        /// The SDP.
        sdp: String,
    },
    /// One trickled ICE candidate (`takeCandidate`); an empty `candidate` ends them.
    TakeCandidate {
        /// The stream.
        stream_id: String,
        /// `label`: the m-line index.
        label: Option<u32>,
        /// `id`: the m-line's mid.
        mid: Option<String>,
        /// `candidate`: the `candidate:...` attribute value, or empty.
        candidate: String,
    },
    /// Keep-alive (`ping`), answered with `pong`.
    Ping,
    /// The stream's renditions (`getStreamInfo`).
    GetStreamInfo {
        /// The stream.
        stream_id: String,
    },
    /// The STUN/TURN servers to use (`getIceServerConfig`).
    GetIceServerConfig,
    /// Play this rendition of `stream_id` from the next keyframe (`forceStreamQuality`).
    ForceStreamQuality {
        /// The stream.
        stream_id: String,
        /// `streamHeight`: the rendition's height in lines; 0 lets the server choose (auto).
        height: u32,
    },
    /// A command this server does not answer (conferences, data channels...).
    Unsupported {
        /// The `command` as sent (cut to 64 characters).
        command: String,
    },
}

/// Why a text message is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Not JSON at all.
    #[error("the message is not JSON")]
    NotJson,
    /// JSON, but not an object with a string `command`.
    #[error("the message is not an object with a string `command`")]
    NoCommand,
    /// A field the command needs is absent or of the wrong type.
    #[error("`{command}` needs `{field}` as {want}")]
    Field {
        /// The command.
        command: &'static str,
        /// The field.
        field: &'static str,
        /// What it must be.
        want: &'static str,
    },
    /// `streamId` is empty or longer than [`MAX_STREAM_ID`].
    #[error("`streamId` must be 1 to {MAX_STREAM_ID} characters")]
    StreamId,
}

impl SignalError {
    /// The `definition` of the `error` answered (Ant Media's names where it has one).
    pub fn definition(&self) -> Definition {
        match self {
            SignalError::NotJson | SignalError::NoCommand => Definition::InvalidMessage,
            SignalError::Field {
                field: "streamId", ..
            } => Definition::NoStreamIdSpecified,
            SignalError::Field { .. } => Definition::InvalidMessage,
            SignalError::StreamId => Definition::InvalidStreamName,
        }
    }
}

/// Reads one text message.
pub fn parse(text: &str) -> Result<Request, SignalError> {
    let value: Value = serde_json::from_str(text).map_err(|_| SignalError::NotJson)?;
    let Value::Object(obj) = value else {
        return Err(SignalError::NoCommand);
    };
    let Some(Value::String(command)) = obj.get("command") else {
        return Err(SignalError::NoCommand);
    };
    Ok(match command.as_str() {
        "play" => Request::Play {
            stream_id: stream_id(&obj, "play")?,
            token: optional_string(&obj, "play", "token")?.filter(|t| !t.is_empty()),
        },
        "publish" => Request::Publish {
            stream_id: stream_id(&obj, "publish")?,
            token: optional_string(&obj, "publish", "token")?.filter(|t| !t.is_empty()),
        },
        "stop" => Request::Stop {
            stream_id: stream_id(&obj, "stop")?,
        },
        "takeConfiguration" => Request::TakeConfiguration {
            stream_id: stream_id(&obj, "takeConfiguration")?,
            kind: string(&obj, "takeConfiguration", "type")?,
            sdp: string(&obj, "takeConfiguration", "sdp")?,
        },
        "takeCandidate" => Request::TakeCandidate {
            stream_id: stream_id(&obj, "takeCandidate")?,
            label: label(&obj)?,
            mid: optional_string(&obj, "takeCandidate", "id")?,
            candidate: optional_string(&obj, "takeCandidate", "candidate")?.unwrap_or_default(),
        },
        "ping" => Request::Ping,
        "getStreamInfo" => Request::GetStreamInfo {
            stream_id: stream_id(&obj, "getStreamInfo")?,
        },
        "getIceServerConfig" => Request::GetIceServerConfig,
        "forceStreamQuality" => Request::ForceStreamQuality {
            stream_id: stream_id(&obj, "forceStreamQuality")?,
            height: height(&obj)?,
        },
        other => Request::Unsupported {
            command: other.chars().take(64).collect(),
        },
    })
}

/// A string field the command needs.
fn string(
    obj: &Map<String, Value>,
    command: &'static str,
    field: &'static str,
) -> Result<String, SignalError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(SignalError::Field {
            command,
            field,
            want: "a string",
        }),
    }
}

/// A string field that may be absent or `null`.
fn optional_string(
    obj: &Map<String, Value>,
    command: &'static str,
    field: &'static str,
) -> Result<Option<String>, SignalError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SignalError::Field {
            command,
            field,
            want: "a string",
        }),
    }
}

/// `streamId`, 1 to [`MAX_STREAM_ID`] characters.
fn stream_id(obj: &Map<String, Value>, command: &'static str) -> Result<String, SignalError> {
    let id = string(obj, command, "streamId")?;
    if id.is_empty() || id.len() > MAX_STREAM_ID {
        return Err(SignalError::StreamId);
    }
    Ok(id)
}

/// `label`: a number (the adaptor sends `sdpMLineIndex`), a numeric string, or absent/null.
fn label(obj: &Map<String, Value>) -> Result<Option<u32>, SignalError> {
    let bad = SignalError::Field {
        command: "takeCandidate",
        field: "label",
        want: "an m-line index",
    };
    match obj.get("label") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(bad),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad),
        Some(_) => Err(bad),
    }
}

/// `streamHeight`: lines (a number, or a numeric string as some pages send it), 0 = auto.
fn height(obj: &Map<String, Value>) -> Result<u32, SignalError> {
    let bad = SignalError::Field {
        command: "forceStreamQuality",
        field: "streamHeight",
        want: "a height in lines (0 = auto)",
    };
    match obj.get("streamHeight") {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or(bad),
        Some(Value::String(s)) => s.parse().map_err(|_| bad),
        _ => Err(bad),
    }
}

/// The `definition` of a `notification` or an `error` (Ant Media's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    /// Media flows to the viewer.
    PlayStarted,
    /// The session ended.
    PlayFinished,
    /// The node is shutting down: reconnect elsewhere.
    ServerWillStop,
    /// The stream is not live (or has no video).
    NoStreamExist,
    /// The play token was refused.
    Unauthorized,
    /// A `play` for a stream this socket already plays.
    AlreadyPlaying,
    /// The node or the socket holds its maximum of sessions.
    ViewerLimitReached,
    /// The viewer's answer could not be used.
    NotSetRemoteDescription,
    /// A message without a `streamId`.
    NoStreamIdSpecified,
    /// A `streamId` that is empty or too long.
    InvalidStreamName,
    /// Not JSON, no `command`, or a field of the wrong type.
    InvalidMessage,
    /// A command this server does not answer.
    UnsupportedCommand,
    /// A `takeConfiguration` or `takeCandidate` for a stream with no session on this socket.
    NoSession,
    /// The app is not served by this node, or WebRTC is off.
    NotServed,
    /// Something failed on the server (its log says what).
    ServerError,
    /// `forceStreamQuality` named a height the stream has no rendition of.
    NoSuchRendition,
    /// A published stream's media reached the server.
    PublishStarted,
    /// A publication ended (by `stop`, the socket closing, silence or a takeover).
    PublishFinished,
    /// The stream is live already (published here or on another origin).
    StreamIdInUse,
    /// This node takes no publishers (an edge): publish through an origin.
    PublishNotAllowed,
    /// The node carries its maximum of streams, or of HLS memory.
    HighResourceUsage,
}

impl Definition {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Definition::PlayStarted => "play_started",
            Definition::PlayFinished => "play_finished",
            Definition::ServerWillStop => "server_will_stop",
            Definition::NoStreamExist => "no_stream_exist",
            Definition::Unauthorized => "unauthorized_access",
            Definition::AlreadyPlaying => "already_playing",
            Definition::ViewerLimitReached => "viewerLimitReached",
            Definition::NotSetRemoteDescription => "notSetRemoteDescription",
            Definition::NoStreamIdSpecified => "noStreamNameSpecified",
            Definition::InvalidStreamName => "invalidStreamName",
            Definition::InvalidMessage => "invalid_message",
            Definition::UnsupportedCommand => "unsupported_command",
            Definition::NoSession => "no_session",
            Definition::NotServed => "not_served",
            Definition::ServerError => "server_error_check_logs",
            Definition::NoSuchRendition => "no_such_rendition",
            Definition::PublishStarted => "publish_started",
            Definition::PublishFinished => "publish_finished",
            Definition::StreamIdInUse => "streamIdInUse",
            Definition::PublishNotAllowed => "publish_not_allowed_on_edge",
            Definition::HighResourceUsage => "highResourceUsage",
        }
    }
}

/// One rendition in `streamInformation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionInfo {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Bits per second.
    pub video_bitrate: u64,
    /// Bits per second.
    pub audio_bitrate: u64,
    /// Ant Media names the codec (`h264`).
    pub video_codec: String,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The server's SDP offer, with the track id of each mid (`idMapping`).
    Offer {
        /// The stream.
        stream_id: String,
        /// The SDP.
        sdp: String,
        /// mid -> track id.
        id_mapping: Vec<(String, String)>,
    },
    /// A publisher may send its offer now (`start`).
    Start {
        /// The stream.
        stream_id: String,
    },
    /// The server's SDP answer to a publisher's offer (`takeConfiguration` type `answer`).
    Answer {
        /// The stream.
        stream_id: String,
        /// The SDP.
        sdp: String,
    },
    /// A server ICE candidate (`takeCandidate`).
    Candidate {
        /// The stream.
        stream_id: String,
        /// The m-line index.
        label: u32,
        /// The m-line's mid.
        mid: String,
        /// `candidate:...`.
        candidate: String,
    },
    /// A `notification`.
    Notification {
        /// What happened.
        definition: Definition,
        /// The stream it concerns, if one.
        stream_id: Option<String>,
    },
    /// An `error`; the socket stays usable.
    Error {
        /// What failed.
        definition: Definition,
        /// The stream it concerns, if one.
        stream_id: Option<String>,
        /// Why, for people (Ant Media's clients ignore it).
        message: Option<String>,
    },
    /// The answer to `ping`.
    Pong,
    /// The answer to `getStreamInfo`.
    StreamInformation {
        /// The stream.
        stream_id: String,
        /// Its renditions, source first.
        renditions: Vec<RenditionInfo>,
    },
    /// The answer to `getIceServerConfig`: no STUN/TURN (this node is ICE-lite on a reachable
    /// address; the adaptor then keeps its own configuration).
    IceServerConfig,
}

impl Reply {
    /// An `error` about `stream_id`.
    pub fn error(definition: Definition, stream_id: Option<&str>, message: Option<String>) -> Self {
        Reply::Error {
            definition,
            stream_id: stream_id.map(str::to_owned),
            message,
        }
    }

    /// A `notification` about `stream_id`.
    pub fn notification(definition: Definition, stream_id: Option<&str>) -> Self {
        Reply::Notification {
            definition,
            stream_id: stream_id.map(str::to_owned),
        }
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        let value = match self {
            Reply::Offer {
                stream_id,
                sdp,
                id_mapping,
            } => {
                let mapping: Map<String, Value> = id_mapping
                    .iter()
                    .map(|(mid, track)| (mid.clone(), Value::String(track.clone())))
                    .collect();
                json!({"command": "takeConfiguration", "streamId": stream_id, "type": "offer",
                       "sdp": sdp, "idMapping": mapping})
            }
            Reply::Start { stream_id } => json!({"command": "start", "streamId": stream_id}),
            Reply::Answer { stream_id, sdp } => {
                // The adaptor reads `idMapping[streamId][mid]` on every remote track.
                json!({"command": "takeConfiguration", "streamId": stream_id, "type": "answer",
                       "sdp": sdp, "idMapping": {}})
            }
            Reply::Candidate {
                stream_id,
                label,
                mid,
                candidate,
            } => json!({"command": "takeCandidate", "streamId": stream_id, "label": label,
                        "id": mid, "candidate": candidate}),
            Reply::Notification {
                definition,
                stream_id,
            } => {
                let mut v = json!({"command": "notification", "definition": definition.as_str()});
                if let (Some(id), Value::Object(o)) = (stream_id, &mut v) {
                    o.insert("streamId".into(), Value::String(id.clone()));
                }
                v
            }
            Reply::Error {
                definition,
                stream_id,
                message,
            } => {
                let mut o = Map::new();
                o.insert("command".into(), "error".into());
                o.insert("definition".into(), definition.as_str().into());
                if let Some(id) = stream_id {
                    o.insert("streamId".into(), Value::String(id.clone()));
                }
                if let Some(m) = message {
                    o.insert("message".into(), Value::String(m.clone()));
                }
                Value::Object(o)
            }
            Reply::Pong => json!({"command": "pong"}),
            Reply::StreamInformation {
                stream_id,
                renditions,
            } => {
                let infos: Vec<Value> = renditions
                    .iter()
                    .map(|r| {
                        json!({"streamWidth": r.width, "streamHeight": r.height,
                               "videoBitrate": r.video_bitrate, "audioBitrate": r.audio_bitrate,
                               "videoCodec": r.video_codec})
                    })
                    .collect();
                json!({"command": "streamInformation", "streamId": stream_id, "streamInfo": infos})
            }
            Reply::IceServerConfig => json!({"command": "iceServerConfig"}),
        };
        value.to_string()
    }
}

/// The SDP with `a=fmtp` parameters written without the space after `;` that the adaptor puts
/// there (it turns `useinbandfec=1` into `useinbandfec=1; stereo=1`), which str0m would read as
/// part of the parameter name.
pub fn normalized_fmtp(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=fmtp:") {
            out.push_str(&line.replace("; ", ";"));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn play_as_the_adaptor_sends_it() {
        // webrtc_adaptor.js 2.16 `play()`: every field present, empty strings for "none".
        let text = r#"{"command":"play","streamId":"cam","token":"","room":"","trackList":[],
            "subscriberId":"","subscriberCode":"","viewerInfo":"","role":"","userPublishId":""}"#;
        assert_eq!(
            parse(text),
            Ok(Request::Play {
                stream_id: "cam".into(),
                token: None
            })
        );
        let text = r#"{"command":"play","streamId":"cam","token":"eyJ.x.y"}"#;
        assert_eq!(
            parse(text),
            Ok(Request::Play {
                stream_id: "cam".into(),
                token: Some("eyJ.x.y".into())
            })
        );
    }

    #[test]
    fn every_request() {
        assert_eq!(
            parse(r#"{"command":"stop","streamId":"s"}"#),
            Ok(Request::Stop {
                stream_id: "s".into()
            })
        );
        assert_eq!(
            parse(r#"{"command":"takeConfiguration","streamId":"s","type":"answer","sdp":"v=0"}"#),
            Ok(Request::TakeConfiguration {
                stream_id: "s".into(),
                kind: "answer".into(),
                sdp: "v=0".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"command":"takeCandidate","streamId":"s","label":0,"id":"0","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}"#
            ),
            Ok(Request::TakeCandidate {
                stream_id: "s".into(),
                label: Some(0),
                mid: Some("0".into()),
                candidate: "candidate:1 1 udp 1 1.2.3.4 5 typ host".into()
            })
        );
        // End of candidates: empty candidate, a label given as text.
        assert_eq!(
            parse(
                r#"{"command":"takeCandidate","streamId":"s","label":"1","id":null,"candidate":""}"#
            ),
            Ok(Request::TakeCandidate {
                stream_id: "s".into(),
                label: Some(1),
                mid: None,
                candidate: String::new()
            })
        );
        assert_eq!(parse(r#"{"command":"ping"}"#), Ok(Request::Ping));
        assert_eq!(
            parse(r#"{"command":"getStreamInfo","streamId":"s"}"#),
            Ok(Request::GetStreamInfo {
                stream_id: "s".into()
            })
        );
        assert_eq!(
            parse(r#"{"command":"getIceServerConfig"}"#),
            Ok(Request::GetIceServerConfig)
        );
        // webrtc_adaptor.js `forceStreamQuality(streamId, resolution)`.
        assert_eq!(
            parse(r#"{"command":"forceStreamQuality","streamId":"s","streamHeight":240}"#),
            Ok(Request::ForceStreamQuality {
                stream_id: "s".into(),
                height: 240
            })
        );
        assert_eq!(
            parse(r#"{"command":"forceStreamQuality","streamId":"s","streamHeight":"0"}"#),
            Ok(Request::ForceStreamQuality {
                stream_id: "s".into(),
                height: 0
            })
        );
        let e = parse(r#"{"command":"forceStreamQuality","streamId":"s","streamHeight":-5}"#)
            .unwrap_err();
        assert!(e.to_string().contains("streamHeight"), "{e}");
        // webrtc_adaptor.js `sendPublishCommand`.
        assert_eq!(
            parse(
                r#"{"command":"publish","streamId":"s","token":"","subscriberId":"","subscriberCode":"",
                    "streamName":"","mainTrack":"","video":true,"audio":true,"metaData":"","role":""}"#
            ),
            Ok(Request::Publish {
                stream_id: "s".into(),
                token: None
            })
        );
        assert_eq!(
            parse(r#"{"command":"publish","streamId":"s","token":"t"}"#),
            Ok(Request::Publish {
                stream_id: "s".into(),
                token: Some("t".into())
            })
        );
        assert_eq!(
            parse(r#"{"command":"joinRoom","room":"r"}"#),
            Ok(Request::Unsupported {
                command: "joinRoom".into()
            })
        );
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        assert_eq!(parse("hello"), Err(SignalError::NotJson));
        assert_eq!(parse(""), Err(SignalError::NotJson));
        assert_eq!(parse("[1,2]"), Err(SignalError::NoCommand));
        assert_eq!(parse(r#"{"command":7}"#), Err(SignalError::NoCommand));
        assert_eq!(parse(r#"{"streamId":"s"}"#), Err(SignalError::NoCommand));
        let e = parse(r#"{"command":"play"}"#).unwrap_err();
        assert_eq!(e.definition(), Definition::NoStreamIdSpecified);
        assert_eq!(e.to_string(), "`play` needs `streamId` as a string");
        let e = parse(r#"{"command":"play","streamId":""}"#).unwrap_err();
        assert_eq!(e, SignalError::StreamId);
        assert_eq!(e.definition(), Definition::InvalidStreamName);
        let long = format!(r#"{{"command":"play","streamId":"{}"}}"#, "a".repeat(300));
        assert_eq!(parse(&long), Err(SignalError::StreamId));
        let e = parse(r#"{"command":"play","streamId":"s","token":5}"#).unwrap_err();
        assert_eq!(e.definition(), Definition::InvalidMessage);
        let e =
            parse(r#"{"command":"takeConfiguration","streamId":"s","type":"answer"}"#).unwrap_err();
        assert_eq!(e.to_string(), "`takeConfiguration` needs `sdp` as a string");
        let e = parse(r#"{"command":"takeCandidate","streamId":"s","label":-1}"#).unwrap_err();
        assert_eq!(e.definition(), Definition::InvalidMessage);
        let e = parse(r#"{"command":"takeCandidate","streamId":"s","label":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("label"), "{e}");
        let long = format!(r#"{{"command":"{}"}}"#, "x".repeat(500));
        match parse(&long) {
            Ok(Request::Unsupported { command }) => assert_eq!(command.len(), 64),
            other => panic!("{other:?}"),
        }
    }

    fn value(reply: &Reply) -> Value {
        serde_json::from_str(&reply.to_json()).unwrap()
    }

    #[test]
    fn replies_as_the_adaptor_reads_them() {
        // websocket_adaptor.js: takeConfiguration(obj.streamId, obj.sdp, obj.type, obj.idMapping).
        let offer = Reply::Offer {
            stream_id: "cam".into(),
            sdp: "v=0\r\n".into(),
            id_mapping: vec![("0".into(), "videoTrack".into())],
        };
        assert_eq!(
            value(&offer),
            json!({"command": "takeConfiguration", "streamId": "cam", "type": "offer",
                   "sdp": "v=0\r\n", "idMapping": {"0": "videoTrack"}})
        );
        // takeCandidate(obj.streamId, obj.label, obj.candidate).
        let c = Reply::Candidate {
            stream_id: "cam".into(),
            label: 0,
            mid: "0".into(),
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
        };
        assert_eq!(value(&c)["label"], 0);
        assert_eq!(value(&c)["id"], "0");
        // callback(obj.definition, obj).
        assert_eq!(
            value(&Reply::notification(Definition::PlayStarted, Some("cam"))),
            json!({"command": "notification", "definition": "play_started", "streamId": "cam"})
        );
        assert_eq!(
            value(&Reply::notification(Definition::ServerWillStop, None)),
            json!({"command": "notification", "definition": "server_will_stop"})
        );
        // callbackError(obj.definition, obj).
        assert_eq!(
            value(&Reply::error(Definition::NoStreamExist, Some("x"), None)),
            json!({"command": "error", "definition": "no_stream_exist", "streamId": "x"})
        );
        assert_eq!(
            value(&Reply::error(
                Definition::Unauthorized,
                None,
                Some("bad token".into())
            )),
            json!({"command": "error", "definition": "unauthorized_access", "message": "bad token"})
        );
        assert_eq!(value(&Reply::Pong), json!({"command": "pong"}));
        // websocket_adaptor.js: `start` -> startPublishing(obj.streamId).
        assert_eq!(
            value(&Reply::Start {
                stream_id: "cam".into()
            }),
            json!({"command": "start", "streamId": "cam"})
        );
        assert_eq!(
            value(&Reply::Answer {
                stream_id: "cam".into(),
                sdp: "v=0\r\n".into()
            }),
            json!({"command": "takeConfiguration", "streamId": "cam", "type": "answer",
                   "sdp": "v=0\r\n", "idMapping": {}})
        );
        assert_eq!(
            value(&Reply::error(Definition::StreamIdInUse, Some("cam"), None)),
            json!({"command": "error", "definition": "streamIdInUse", "streamId": "cam"})
        );
        assert_eq!(
            value(&Reply::IceServerConfig),
            json!({"command": "iceServerConfig"})
        );
        let info = Reply::StreamInformation {
            stream_id: "cam".into(),
            renditions: vec![RenditionInfo {
                width: 640,
                height: 360,
                video_bitrate: 500_000,
                audio_bitrate: 64_000,
                video_codec: "h264".into(),
            }],
        };
        assert_eq!(
            value(&info),
            json!({"command": "streamInformation", "streamId": "cam", "streamInfo": [
                {"streamWidth": 640, "streamHeight": 360, "videoBitrate": 500000,
                 "audioBitrate": 64000, "videoCodec": "h264"}]})
        );
    }

    #[test]
    fn the_adaptors_stereo_rewrite_is_undone() {
        let sdp = "v=0\r\na=fmtp:111 minptime=10;useinbandfec=1; stereo=1\r\na=x:a; b\r\n";
        assert_eq!(
            normalized_fmtp(sdp),
            "v=0\r\na=fmtp:111 minptime=10;useinbandfec=1;stereo=1\r\na=x:a; b\r\n"
        );
    }
}
