//! Stream security: whether a publisher or a viewer may have a stream, from the app's
//! `security:` (Ant Media's JWT stream security, and the older HMAC publish token).
//!
//! Tokens travel as `?token=` on RTMP stream names and HLS URLs. A JWT is HS256 with the claims
//! `streamId`, `type` (`publish` | `play`) and `exp` (seconds since the epoch), as Ant Media's
//! `jwt-token` REST call mints them; checking one needs only the app's key, so every node (an
//! edge too) checks tokens itself, with no store round trip.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{PlayRule, PublishRule};

/// Longest token looked at: a JWT with these three claims is about 200 characters.
pub const MAX_TOKEN: usize = 4096;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Publishing.
    Publish,
    /// Playing.
    Play,
}

impl Want {
    fn claim(self) -> &'static str {
        match self {
            Want::Publish => "publish",
            Want::Play => "play",
        }
    }
}

/// Why a token was refused; the text goes to the client (it names no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `token` where one is needed.
    Missing,
    /// Longer than [`MAX_TOKEN`], not a JWT, or claims missing or of the wrong type.
    Malformed,
    /// Not signed with the app's key (or not HS256).
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// A token of the other type.
    WrongType {
        /// The `type` claim.
        got: String,
    },
    /// A token for another stream.
    WrongStream,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => f.write_str("a token is required (?token=)"),
            Refusal::Malformed => f.write_str("the token is not a valid stream token"),
            Refusal::BadSignature => f.write_str("the token's signature is not valid"),
            Refusal::Expired => f.write_str("the token has expired"),
            Refusal::WrongType { got } => write!(f, "the token is a `{got}` token"),
            Refusal::WrongStream => f.write_str("the token is for another stream"),
        }
    }
}

/// The `token` parameter of a query string (`a=1&token=xyz`), if any.
pub fn token_in(query: &str) -> Option<&str> {
    streamfleet_proto::http::query_param(query, "token")
}

/// Whether `token` lets its bearer publish `stream_id` under `rule`.
pub fn may_publish(
    rule: &PublishRule,
    stream_id: &str,
    token: Option<&str>,
) -> Result<(), Refusal> {
    match rule {
        PublishRule::Open => Ok(()),
        PublishRule::Hmac(secret) => {
            if hmac_valid(secret.expose(), stream_id, token.ok_or(Refusal::Missing)?) {
                Ok(())
            } else {
                Err(Refusal::BadSignature)
            }
        }
        PublishRule::Jwt(secret) => jwt_valid(secret.expose(), stream_id, token, Want::Publish),
    }
}

/// Whether `token` lets its bearer play `stream_id` under `rule`.
pub fn may_play(rule: &PlayRule, stream_id: &str, token: Option<&str>) -> Result<(), Refusal> {
    match rule {
        PlayRule::Open => Ok(()),
        PlayRule::Jwt(secret) => jwt_valid(secret.expose(), stream_id, token, Want::Play),
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "streamId")]
    stream_id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Checks an HS256 JWT: signature, `exp` (no leeway, as Ant Media), `type`, `streamId`.
fn jwt_valid(
    secret: &str,
    stream_id: &str,
    token: Option<&str>,
    want: Want,
) -> Result<(), Refusal> {
    let token = token.ok_or(Refusal::Missing)?;
    if token.len() > MAX_TOKEN {
        return Err(Refusal::Malformed);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Refusal::BadSignature,
        _ => Refusal::Malformed,
    })?;
    let claims = data.claims;
    if claims.kind != want.claim() {
        return Err(Refusal::WrongType { got: claims.kind });
    }
    if claims.stream_id != stream_id {
        return Err(Refusal::WrongStream);
    }
    Ok(())
}

/// Checks a REST JWT (Ant Media's JWT server control): HS256 with `secret`; `exp`, when present,
/// has not passed (Ant Media's REST tokens need no other claim).
pub fn rest_token_valid(secret: &str, token: &str) -> Result<(), Refusal> {
    if token.len() > MAX_TOKEN {
        return Err(Refusal::Malformed);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = true;
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|_| ())
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Refusal::BadSignature,
        _ => Refusal::Malformed,
    })
}

/// A stream token as Ant Media's `jwt-token` REST call mints it: HS256 over `streamId`, `type`
/// and `exp` (seconds since the epoch).
pub fn mint(secret: &str, stream_id: &str, want: Want, exp: u64) -> Option<String> {
    let claims = serde_json::json!({"streamId": stream_id, "type": want.claim(), "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .ok()
}

/// `<hex HMAC-SHA256(secret, streamId)>`, compared in constant time.
fn hmac_valid(secret: &str, stream_id: &str, token: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    // A SHA-256 MAC is 64 hex digits: anything much longer is not worth decoding.
    let Some(token) = (token.len() <= 128)
        .then(|| hex::decode(token).ok())
        .flatten()
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(stream_id.as_bytes());
    mac.verify_slice(&token).is_ok()
}

/// A playlist whose URIs (lines that are not tags, and `URI="..."` attributes) carry
/// `token=<token>`, so a player that loaded it with a play token fetches its segments, parts and
/// renditions with it, without knowing about tokens. `token` was checked, so it holds only
/// URL-safe characters (base64url and dots).
pub fn playlist_with_token(playlist: &str, token: &str) -> String {
    let add = |uri: &str| {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}token={token}")
    };
    let mut out = String::with_capacity(playlist.len() + 64 * token.len());
    for line in playlist.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(&add(line));
        } else {
            let mut rest = line;
            while let Some(at) = rest.find("URI=\"") {
                let (head, tail) = rest.split_at(at + 5);
                out.push_str(head);
                let end = tail.find('"').unwrap_or(tail.len());
                out.push_str(&add(&tail[..end]));
                rest = &tail[end..];
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use jsonwebtoken::{EncodingKey, Header};

    const KEY: &str = "0123456789abcdef-test-key";

    #[test]
    fn rest_tokens_need_the_key_and_an_unexpired_exp_when_there_is_one() {
        let sign = |claims: serde_json::Value, key: &str| {
            jsonwebtoken::encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(key.as_bytes()),
            )
            .unwrap()
        };
        let t = now();
        assert_eq!(
            rest_token_valid(KEY, &sign(serde_json::json!({"sub": "ops"}), KEY)),
            Ok(())
        );
        assert_eq!(
            rest_token_valid(KEY, &sign(serde_json::json!({"exp": t + 60}), KEY)),
            Ok(())
        );
        assert_eq!(
            rest_token_valid(KEY, &sign(serde_json::json!({"exp": t - 1}), KEY)),
            Err(Refusal::Expired)
        );
        assert_eq!(
            rest_token_valid(
                KEY,
                &sign(serde_json::json!({"exp": t + 60}), "another-key-0123456")
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(rest_token_valid(KEY, "garbage"), Err(Refusal::Malformed));
        // What `mint` makes is what players and publishers present.
        let token = mint(KEY, "cam1", Want::Play, t + 60).unwrap();
        let rule = PlayRule::Jwt(Secret::new(KEY));
        assert_eq!(may_play(&rule, "cam1", Some(&token)), Ok(()));
        assert_eq!(
            may_play(&rule, "cam2", Some(&token)),
            Err(Refusal::WrongStream)
        );
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn jwt(key: &str, stream: &str, kind: &str, exp: u64) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"streamId": stream, "type": kind, "exp": exp}),
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn jwt_tokens_are_checked_for_signature_expiry_type_and_stream() {
        let publish = PublishRule::Jwt(Secret::new(KEY));
        let play = PlayRule::Jwt(Secret::new(KEY));
        let later = now() + 600;
        let ok = jwt(KEY, "cam1", "publish", later);
        assert_eq!(may_publish(&publish, "cam1", Some(&ok)), Ok(()));
        assert_eq!(
            may_publish(&publish, "cam2", Some(&ok)),
            Err(Refusal::WrongStream)
        );
        assert_eq!(
            may_play(&play, "cam1", Some(&ok)),
            Err(Refusal::WrongType {
                got: "publish".into()
            })
        );
        let viewer = jwt(KEY, "cam1", "play", later);
        assert_eq!(may_play(&play, "cam1", Some(&viewer)), Ok(()));
        assert_eq!(
            may_publish(
                &publish,
                "cam1",
                Some(&jwt(KEY, "cam1", "publish", now() - 5))
            ),
            Err(Refusal::Expired)
        );
        assert_eq!(
            may_publish(
                &publish,
                "cam1",
                Some(&jwt("another-key-of-16+", "cam1", "publish", later))
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(may_publish(&publish, "cam1", None), Err(Refusal::Missing));
        for junk in ["", "abc", "a.b.c", &"x".repeat(MAX_TOKEN + 1)] {
            assert_eq!(
                may_publish(&publish, "cam1", Some(junk)),
                Err(Refusal::Malformed),
                "{junk:.20}"
            );
        }
        // No `exp`: refused (a token that never expires is not one Ant Media mints).
        let forever = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"streamId": "cam1", "type": "publish"}),
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            may_publish(&publish, "cam1", Some(&forever)),
            Err(Refusal::Malformed)
        );
        // `alg: none` and other algorithms: refused.
        // {"alg":"none","typ":"JWT"} over a valid token's claims, no signature.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            ok.split('.').nth(1).unwrap()
        );
        assert!(may_publish(&publish, "cam1", Some(&none)).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"streamId": "cam1", "type": "publish", "exp": later}),
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            may_publish(&publish, "cam1", Some(&hs512)),
            Err(Refusal::BadSignature)
        );
        // Open rules need nothing.
        assert_eq!(may_publish(&PublishRule::Open, "x", None), Ok(()));
        assert_eq!(may_play(&PlayRule::Open, "x", None), Ok(()));
    }

    #[test]
    fn hmac_publish_tokens() {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"cam1");
        let hex = hex::encode(mac.finalize().into_bytes());
        let rule = PublishRule::Hmac(Secret::new("s3cret"));
        assert_eq!(
            may_publish(&rule, "cam1", token_in(&format!("token={hex}"))),
            Ok(())
        );
        assert_eq!(
            may_publish(&rule, "cam1", token_in(&format!("x=1&token={hex}"))),
            Ok(())
        );
        assert_eq!(
            may_publish(&rule, "cam2", Some(&hex)),
            Err(Refusal::BadSignature),
            "token is per stream"
        );
        let other = PublishRule::Hmac(Secret::new("other"));
        assert_eq!(
            may_publish(&other, "cam1", Some(&hex)),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            may_publish(&rule, "cam1", token_in("")),
            Err(Refusal::Missing)
        );
        assert_eq!(
            may_publish(&rule, "cam1", Some("zz")),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn playlists_carry_the_token_on_every_uri() {
        let pl = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.0,\ndemo-1.ts\n#EXT-X-PART:DURATION=0.3,URI=\"a-2.0.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a-2.1.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"demo_240p.m3u8?x=1\",LAST-MSN=2\nhttp://h/x.ts\n";
        let out = playlist_with_token(pl, "T.k-n");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=T.k-n\"\n#EXTINF:1.0,\ndemo-1.ts?token=T.k-n\n#EXT-X-PART:DURATION=0.3,URI=\"a-2.0.m4s?token=T.k-n\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"a-2.1.m4s?token=T.k-n\"\n#EXT-X-RENDITION-REPORT:URI=\"demo_240p.m3u8?x=1&token=T.k-n\",LAST-MSN=2\nhttp://h/x.ts?token=T.k-n\n"
        );
    }
}
