//! Tests of the webhook form, signature, queue, retry policy and a real HTTPS exchange.

use super::client::*;
use super::retry::*;
use super::*;

fn event(action: Action) -> Event {
    Event {
        key: StreamKey::new("live", "cam-1.hd"),
        epoch: 7,
        action,
        at_ms: 1_700_000_000_123,
    }
}

#[test]
fn form_has_ant_media_fields() {
    assert_eq!(
        event(Action::Started).form(),
        "action=liveStreamStarted&id=cam-1.hd&streamName=cam-1.hd&category=&app=live&epoch=7&timestamp=1700000000123"
    );
    assert_eq!(
        event(Action::Ended).delivery_id(),
        "live/cam-1.hd/7/liveStreamEnded"
    );
    // Values are form-encoded (stream ids cannot hold these, but nothing relies on it).
    let mut odd = event(Action::Ended);
    odd.key = StreamKey::new("a b", "x&y=z/é");
    assert!(
        odd.form()
            .starts_with("action=liveStreamEnded&id=x%26y%3Dz%2F%C3%A9&streamName=x%26y%3Dz%2F%C3%A9&category=&app=a%20b&"),
        "{}",
        odd.form()
    );
}

#[test]
fn signature_is_hex_hmac_sha256() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        signature(&Secret::new("Jefe"), b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn targets_parse_without_leaking_credentials_or_query() {
    let t = Target::parse(
        "https://user:pw@hooks.example.com/ant/hook?token=abc",
        Secret::new("k"),
    )
    .unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.path.as_str(), t.shown.as_str()),
        (
            "hooks.example.com",
            443,
            "/ant/hook?token=abc",
            "https://hooks.example.com/ant/hook"
        )
    );
    assert_eq!(t.authority, "hooks.example.com");
    assert!(t.tls.is_some() && t.had_credentials);

    let t = Target::parse("http://[::1]:8080", Secret::new("k")).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.path.as_str(), t.tls.is_none()),
        ("::1", 8080, "/", true)
    );
    assert_eq!(t.authority, "[::1]:8080");
    assert!(!t.had_credentials);

    assert!(Target::parse("ftp://h/x", Secret::new("k")).is_none());
    assert!(Target::parse("/relative", Secret::new("k")).is_none());
}

#[test]
fn request_is_signed_and_identified() {
    let t = Target::parse("http://127.0.0.1:9/hook", Secret::new("k")).unwrap();
    let e = event(Action::Started);
    let body = Bytes::from(e.form());
    let sig = signature(&t.secret, &body);
    let r = t.request(&e, body, &sig).unwrap();
    let h = r.headers();
    assert_eq!(r.uri(), "/hook");
    assert_eq!(h[HOST], "127.0.0.1:9");
    assert_eq!(h[CONTENT_TYPE], "application/x-www-form-urlencoded");
    assert_eq!(h[EVENT_HEADER], "liveStreamStarted");
    assert_eq!(h[DELIVERY_HEADER], "live/cam-1.hd/7/liveStreamStarted");
    assert_eq!(h[SIGNATURE_HEADER], sig.as_str());
}

fn status(code: u16) -> Outcome {
    Outcome::Status {
        code,
        retry_after: None,
    }
}

#[test]
fn retry_policy() {
    let b = BACKOFF;
    let s = Duration::from_secs;
    assert_eq!(b.verdict(1, status(200), s(0)), Verdict::Delivered);
    assert_eq!(b.verdict(1, status(204), s(0)), Verdict::Delivered);
    // Refusals a retry would not change.
    for code in [301, 400, 401, 403, 404, 410] {
        assert_eq!(
            b.verdict(1, status(code), s(0)),
            Verdict::Rejected,
            "{code}"
        );
    }
    // Exponential: 1 s, 2 s, 4 s, 8 s, then out of attempts.
    for (attempt, wait) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
        assert_eq!(
            b.verdict(attempt, status(503), s(0)),
            Verdict::RetryIn(s(wait))
        );
        assert_eq!(
            b.verdict(attempt, Outcome::Failed, s(0)),
            Verdict::RetryIn(s(wait))
        );
    }
    assert_eq!(b.verdict(5, status(500), s(20)), Verdict::GiveUp);
    assert_eq!(b.verdict(2, status(429), s(10)), Verdict::RetryIn(s(2)));
    // Retry-After is honoured up to a bound, never below the backoff.
    let asked = |secs| Outcome::Status {
        code: 429,
        retry_after: Some(s(secs)),
    };
    assert_eq!(b.verdict(1, asked(10), s(0)), Verdict::RetryIn(s(10)));
    assert_eq!(b.verdict(1, asked(3600), s(0)), Verdict::RetryIn(s(30)));
    assert_eq!(b.verdict(3, asked(0), s(0)), Verdict::RetryIn(s(4)));
    // No retry past the time budget.
    assert_eq!(b.verdict(4, status(502), s(55)), Verdict::GiveUp);
    assert_eq!(b.verdict(1, asked(30), s(31)), Verdict::GiveUp);
}

#[test]
fn retry_after_in_seconds_only() {
    assert_eq!(
        retry_after(&HeaderValue::from_static(" 7 ")),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
        None
    );
    assert_eq!(printable(b"bad\r\nrequest\x1b[31m"), "bad  request [31m");
}

#[tokio::test]
async fn notify_queues_only_apps_with_a_webhook_and_never_blocks() {
    let apps = [
        test_app("live", Some("http://127.0.0.1:9/h")),
        test_app("other", None),
    ];
    let (hooks, mut outbox) = Webhooks::with_capacity(&apps, 2).unwrap();
    hooks.notify(&StreamKey::new("other", "s"), 1, Action::Started);
    assert_eq!(outbox.try_next(), None);
    for epoch in 1..=5 {
        hooks.notify(&StreamKey::new("live", "s"), epoch, Action::Started);
    }
    assert_eq!(hooks.dropped(), 3);
    let first = outbox.try_next().unwrap();
    assert_eq!((first.epoch, first.action), (1, Action::Started));
    assert_eq!(outbox.try_next().map(|e| e.epoch), Some(2));
    assert_eq!(outbox.try_next(), None);
    // Room again: queued again.
    hooks.notify(&StreamKey::new("live", "s"), 6, Action::Ended);
    assert_eq!(outbox.try_next().map(|e| e.action), Some(Action::Ended));
}

/// One HTTPS exchange with a local server whose certificate the client trusts: the request
/// arrives whole and signed, the answer's status and a bounded excerpt come back.
#[tokio::test]
async fn posts_over_tls() {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Head and the (short) body: until the body's last field has arrived.
        while !String::from_utf8_lossy(&got).contains("&timestamp=1700000000123") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        let answer = format!(
            "HTTP/1.1 503 Busy\r\nretry-after: 3\r\ncontent-length: 2000\r\n\r\n{}",
            "x".repeat(2000)
        );
        tls.write_all(answer.as_bytes()).await.unwrap();
        tls.shutdown().await.unwrap();
        String::from_utf8(got).unwrap()
    });

    let client = Client::with_roots(roots).unwrap();
    let target = Target::parse(
        &format!("https://localhost:{port}/hook?x=1"),
        Secret::new("0123456789abcdef"),
    )
    .unwrap();
    let e = event(Action::Started);
    let body = Bytes::from(e.form());
    let sig = signature(&target.secret, &body);
    let answer = client
        .post(&target, target.request(&e, body, &sig).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.retry_after, answer.excerpt.len()),
        (503, Some(Duration::from_secs(3)), RESPONSE_EXCERPT)
    );
    let request = served.await.unwrap().to_ascii_lowercase();
    assert!(
        request.starts_with("post /hook?x=1 http/1.1\r\n"),
        "{request}"
    );
    for line in [
        format!("host: localhost:{port}\r\n"),
        "content-type: application/x-www-form-urlencoded\r\n".into(),
        format!("{SIGNATURE_HEADER}: {sig}\r\n"),
        format!("content-length: {}\r\n", e.form().len()),
    ] {
        assert!(request.contains(&line), "{line:?} missing in {request}");
    }
}

#[test]
fn a_bad_url_names_the_app() {
    let err = Webhooks::new(&[test_app("live", Some("not a url"))])
        .err()
        .unwrap();
    assert!(matches!(err, WebhookError::Url { ref app } if app == "live"));
}
