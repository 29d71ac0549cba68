use super::*;
use crate::config::{NodeConfig, ProxyMode, Role};

fn errors(yaml: &str) -> Vec<String> {
    match convert(yaml, Path::new("t.yaml")) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn one_error(yaml: &str) -> String {
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "expected one error, got {e:?}");
    e[0].clone()
}

const EDGE: &str = "nodes:\n  - role: edge\n    name: e1\n    http: \"127.0.0.1:0\"\n";

#[test]
fn minimal_edge_gets_every_default() {
    let c = convert(EDGE, Path::new("t.yaml")).unwrap();
    assert_eq!(c.cluster.heartbeat, DEFAULT_HEARTBEAT);
    assert_eq!(c.cluster.node_timeout, DEFAULT_NODE_TIMEOUT);
    assert_eq!(c.cluster.store, StoreConfig::Embedded);
    assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media node")
    };
    assert_eq!(m.role, Role::Edge);
    assert_eq!(m.advertise, "127.0.0.1");
    assert_eq!(m.hls.window, 6);
    assert_eq!(m.apps.len(), 2);
    assert!(m.rtmp.is_none() && m.relay.is_none());
}

#[test]
fn unknown_key_three_levels_deep_names_line_and_key() {
    let yaml = "nodes:\n  - role: lb\n    name: lb1\n    stats:\n      bind: \"127.0.0.1:0\"\n      auth: {user: a, pasword: b}\n";
    let e = one_error(yaml);
    assert!(
        e.starts_with("t.yaml:6:23: nodes[0].stats.auth.pasword: unknown field `pasword`"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = one_error(&format!("{EDGE}    hls: {{window: many}}\n"));
    assert!(e.starts_with("t.yaml:5:19: nodes[0].hls.window:"), "{e}");
    let e = one_error("nodes:\n  - role: dancer\n    name: x\n");
    assert!(e.starts_with("t.yaml:2:11: nodes[0].role:"), "{e}");
}

#[test]
fn bad_duration_size_and_address() {
    let yaml = "cluster: {heartbeat: 2 s}\nnodes:\n  - role: origin\n    name: o\n    rtmp: \"127.0.0.1:99999\"\n    http: \"127.0.0.1:0\"\n    relay: \"127.0.0.1:0\"\n    transcode: {ladder: [{height: 480, bitrate: 1000q}]}\n    apps: [{name: live, security: {publish: open}}]\n";
    let e = errors(yaml);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:1:22: cluster.heartbeat: invalid duration `2 s`"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("t.yaml:5:11: nodes[0].rtmp: invalid address"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("t.yaml:8:49: nodes[0].transcode.ladder[0].bitrate: invalid size `1000q`"),
        "{}",
        e[2]
    );
}

#[test]
fn frontend_naming_a_missing_backend() {
    let yaml = "nodes:\n  - role: lb\n    name: lb1\n    frontends:\n      - {name: f, mode: http, bind: [\"127.0.0.1:0\"], backend: ghost}\n    backends:\n      - {name: b, mode: http, servers: [{name: s, addr: \"127.0.0.1:1\"}]}\n";
    let e = one_error(yaml);
    assert!(
        e.starts_with("t.yaml:5:63: nodes[0].frontends[0].backend: no backend named `ghost`"),
        "{e}"
    );
}

#[test]
fn duplicate_names_and_listener_conflicts() {
    let yaml = "nodes:\n  - {role: edge, name: a, http: \"0.0.0.0:5080\"}\n  - {role: edge, name: a, http: \"127.0.0.1:5080\"}\n  - {role: edge, name: c, http: \"127.0.0.1:0\"}\n  - {role: edge, name: d, http: \"127.0.0.1:0\"}\n";
    let e = errors(yaml);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .any(|e| e.starts_with("t.yaml:3:24: nodes[1].name: duplicate node name `a`")),
        "{e:?}"
    );
    assert!(e.iter().any(|e| e.contains("listener http on 127.0.0.1:5080 conflicts with listener http of node `a` on 0.0.0.0:5080")), "{e:?}");
    // TCP and UDP on one port do not conflict.
    let yaml = "nodes:\n  - {role: origin, name: o, rtmp: \"127.0.0.1:1935\", http: \"127.0.0.1:5080\", relay: \"127.0.0.1:5080\", apps: [{name: live, security: {publish: open}}]}\n";
    assert!(errors(yaml).is_empty(), "{:?}", errors(yaml));
}

#[test]
fn max_streams_has_a_default_a_floor_and_belongs_to_media_nodes() {
    let c = convert(EDGE, Path::new("t.yaml")).unwrap();
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media node")
    };
    assert_eq!(m.max_streams, crate::config::DEFAULT_MAX_STREAMS);
    let c = convert(&format!("{EDGE}    max_streams: 20\n"), Path::new("t.yaml")).unwrap();
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media node")
    };
    assert_eq!(m.max_streams, 20);
    let e = one_error(&format!("{EDGE}    max_streams: 0\n"));
    assert!(
        e.contains("nodes[0].max_streams: must be at least 1"),
        "{e}"
    );
    let e =
        errors("nodes:\n  - {role: lb, name: l, max_streams: 5, frontends: [], backends: []}\n");
    assert!(
        e.iter()
            .any(|e| e.contains("nodes[0].max_streams: not a key of role lb")),
        "{e:?}"
    );
}

#[test]
fn hls_max_memory_has_a_default_a_floor_and_takes_sizes() {
    let media = |yaml: &str| match convert(yaml, Path::new("t.yaml")).unwrap().nodes.remove(0) {
        NodeConfig::Media(m) => m,
        _ => panic!("media node"),
    };
    assert_eq!(
        media(EDGE).hls.max_memory,
        crate::config::DEFAULT_HLS_MAX_MEMORY
    );
    assert_eq!(
        media(&format!("{EDGE}    hls: {{max_memory: 512Mi}}\n"))
            .hls
            .max_memory,
        512 << 20
    );
    let e = one_error(&format!("{EDGE}    hls: {{max_memory: 1000}}\n"));
    assert!(e.contains("nodes[0].hls.max_memory: at least 64Ki"), "{e}");
    let e = one_error(&format!("{EDGE}    hls: {{max_memory: 2TB}}\n"));
    assert!(
        e.contains("nodes[0].hls.max_memory: invalid size `2TB`"),
        "{e}"
    );
}

#[test]
fn webrtc_udp_is_a_listener_and_its_errors_name_the_key() {
    let c = convert(
        &format!("{EDGE}    webrtc: {{udp: \"127.0.0.1:5000\"}}\n"),
        Path::new("t.yaml"),
    )
    .unwrap();
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media node")
    };
    let w = m.webrtc.expect("webrtc on");
    assert_eq!(w.udp, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(w.max_sessions, crate::config::DEFAULT_WEBRTC_MAX_SESSIONS);
    assert_eq!(w.max_sessions_per_address, 20);
    assert!(w.abr, "ABR on by default");
    assert!(
        m.listeners()
            .iter()
            .any(|l| l.name == "webrtc" && l.udp && l.addr.port() == 5000)
    );
    let c = convert(EDGE, Path::new("t.yaml")).unwrap();
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media node")
    };
    assert!(m.webrtc.is_none(), "absent = off");
    let e = one_error(&format!("{EDGE}    webrtc: {{udp: nowhere}}\n"));
    assert!(e.starts_with("t.yaml:5:19: nodes[0].webrtc.udp:"), "{e}");
    let e = one_error(&format!(
        "{EDGE}    webrtc: {{udp: \"127.0.0.1:0\", max_sessions: 0}}\n"
    ));
    assert!(
        e.contains("nodes[0].webrtc.max_sessions: must be at least 1"),
        "{e}"
    );
    let e = one_error(&format!(
        "{EDGE}    webrtc: {{udp: \"127.0.0.1:0\", max_sessions_per_address: 0}}\n"
    ));
    assert!(
        e.contains("nodes[0].webrtc.max_sessions_per_address: must be at least 1"),
        "{e}"
    );
    let c = convert(
        &format!("{EDGE}    webrtc: {{udp: \"127.0.0.1:0\", max_sessions: 5, abr: false}}\n"),
        Path::new("t.yaml"),
    )
    .unwrap();
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media node")
    };
    let w = m.webrtc.expect("webrtc on");
    assert_eq!(w.max_sessions_per_address, 5, "never above max_sessions");
    assert!(!w.abr);
    let e = one_error(&format!(
        "{EDGE}    advertise: edge1.example.com\n    webrtc: {{udp: \"0.0.0.0:5000\"}}\n"
    ));
    assert!(
        e.contains("nodes[0].webrtc.udp: bound to every address"),
        "{e}"
    );
    let e = one_error(&format!(
        "{EDGE}    webrtc: {{udp: \"127.0.0.1:0\", tcp: 1}}\n"
    ));
    assert!(
        e.contains("nodes[0].webrtc.tcp: unknown field `tcp`"),
        "{e}"
    );
    // The WebRTC UDP port may share the number of the HTTP (TCP) port, not the relay's.
    let yaml = "nodes:\n  - {role: origin, name: o, rtmp: \"127.0.0.1:1935\", http: \"127.0.0.1:5080\", relay: \"127.0.0.1:5080\", webrtc: {udp: \"127.0.0.1:5080\"}, apps: [{name: live, security: {publish: open}}]}\n";
    assert!(one_error(yaml).contains("conflicts"), "{:?}", errors(yaml));
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = "cluster: {heartbeat: 1x, node_timeout: 2y}\nshutdown_grace: 3z\nnodes:\n  - {role: edge, name: \"bad name\", http: nowhere}\n";
    assert_eq!(errors(yaml).len(), 5, "{:?}", errors(yaml));
}

#[test]
fn role_specific_keys() {
    let e = errors(
        "nodes:\n  - {role: edge, name: e, http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", transcode: {ladder: []}}\n",
    );
    assert!(e.iter().any(|e| e.contains("edges have no relay")), "{e:?}");
    assert!(
        e.iter().any(|e| e.contains("edges never transcode")),
        "{e:?}"
    );
    let e = errors("nodes:\n  - {role: origin, name: o, http: \"127.0.0.1:0\"}\n");
    assert!(
        e.iter().any(|e| e.contains("nodes[0].rtmp: missing")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains("nodes[0].relay: missing")),
        "{e:?}"
    );
    let e = errors("nodes:\n  - {role: lb, name: l, http: \"127.0.0.1:0\", frontends: []}\n");
    assert!(
        e.iter()
            .any(|e| e.contains("nodes[0].http: not a key of role lb")),
        "{e:?}"
    );
}

#[test]
fn lb_config_with_defaults() {
    let yaml = "nodes:\n  - role: lb\n    name: lb1\n    timeouts: {client: 5s}\n    frontends:\n      - {name: r, mode: rtmp, bind: [\"127.0.0.1:0\"], publish_backend: o, play_backend: e}\n      - {name: h, mode: http, bind: [\"127.0.0.1:0\"], backend: web, routes: [{path_prefix: /live/, backend: web}]}\n    backends:\n      - {name: o, mode: tcp, servers: [{name: o1, addr: \"127.0.0.1:1935\"}]}\n      - {name: e, mode: tcp, balance: leastconn, servers_from: {role: edge, listener: rtmp}}\n      - {name: web, mode: http, sticky: {cookie: JSESSIONID, mode: prefix}, health: {kind: http, path: /healthz}, servers: [{name: a, addr: \"127.0.0.1:5080\", cookie: a}]}\n";
    let c = convert(yaml, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let NodeConfig::Lb(lb) = &c.nodes[0] else {
        panic!("lb")
    };
    assert_eq!(lb.maxconn, 2000);
    assert_eq!(lb.timeouts.client_fin, std::time::Duration::from_secs(5));
    assert_eq!(lb.timeouts.tunnel, std::time::Duration::from_secs(7200));
    assert_eq!(lb.frontends[0].mode, ProxyMode::Rtmp);
    assert_eq!(
        (
            lb.frontends[0].publish_backend,
            lb.frontends[0].play_backend
        ),
        (Some(0), Some(1))
    );
    assert_eq!(lb.frontends[1].routes[0].backend, 2);
    let web = &lb.backends[2];
    assert_eq!(web.retries, 3);
    assert_eq!(web.sticky_cookie.as_deref(), Some("JSESSIONID"));
    let h = web.health.as_ref().unwrap();
    assert_eq!(
        (h.rise, h.fall, h.interval, h.timeout),
        (
            2,
            3,
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(2)
        )
    );
    assert!(lb.backends[1].servers_from.is_some());
    assert_eq!(lb.frontends[0].maxconn_per_source, Some(500));
    assert_eq!(
        lb.frontends[0].handshake_timeout,
        std::time::Duration::from_secs(10)
    );
}

#[test]
fn lb_source_limit_and_rtmp_handshake_timeout_are_checked() {
    let lb = |frontend: &str| {
        format!(
            "nodes:\n  - role: lb\n    name: lb1\n    frontends:\n      - {{name: f, bind: [\"127.0.0.1:0\"], backend: b, {frontend}}}\n    backends:\n      - {{name: b, mode: tcp, servers: [{{name: s, addr: \"127.0.0.1:1\"}}]}}\n"
        )
    };
    let c = convert(
        &lb("mode: rtmp, maxconn_per_source: 0, handshake_timeout: 2500ms"),
        Path::new("t.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let NodeConfig::Lb(l) = &c.nodes[0] else {
        panic!("lb")
    };
    assert_eq!(l.frontends[0].maxconn_per_source, None, "0 turns it off");
    assert_eq!(
        l.frontends[0].handshake_timeout,
        std::time::Duration::from_millis(2500)
    );
    let e = one_error(&lb("mode: tcp, handshake_timeout: 5s"));
    assert!(
        e.contains("handshake_timeout: only frontends with mode rtmp"),
        "{e}"
    );
    let e = one_error(&lb("mode: rtmp, handshake_timeout: 10m"));
    assert!(e.contains("handshake_timeout: between 100ms and 5m"), "{e}");
    let e = one_error(&lb("mode: rtmp, handshake_timeout: soon"));
    assert!(e.contains("handshake_timeout"), "{e}");
    let e = one_error(&lb("mode: tcp, maxconn_per_source: -1"));
    assert!(e.contains("maxconn_per_source"), "{e}");
}

#[test]
fn origins_and_standalone_nodes_must_say_who_may_publish() {
    for role in ["origin", "standalone"] {
        let node = |apps: &str| {
            format!(
                "nodes:\n  - {{role: {role}, name: n, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\"{apps}}}\n"
            )
        };
        let e = one_error(&node(""));
        assert!(
            e.contains(&format!(
                "nodes[0].apps: missing; a {role} node takes publishers"
            )),
            "{e}"
        );
        assert!(e.contains("publish: open"), "{e}");
        let e = one_error(&node(
            ", apps: [live, {name: b, security: {publish: open}}]",
        ));
        assert!(
            e.contains("nodes[0].apps[0].security.publish: missing") && e.contains("`live`"),
            "{e}"
        );
        let e = one_error(&node(
            ", apps: [{name: live, security: {play: jwt, jwt_secret: 0123456789abcdef}}]",
        ));
        assert!(e.contains("apps[0].security.publish: missing"), "{e}");
        for fine in [
            ", apps: [{name: live, security: {publish: open}}]",
            ", apps: [{name: live, publish_token_secret: 0123456789abcdef}]",
            ", apps: [{name: live, security: {publish: jwt, jwt_secret: 0123456789abcdef}}]",
        ] {
            assert_eq!(errors(&node(fine)), Vec::<String>::new(), "{fine}");
        }
    }
    // Edges take no publishers: their apps need no publish rule.
    assert!(errors(EDGE).is_empty());
}

#[test]
fn weak_secrets_are_refused_unless_the_file_is_a_local_demo() {
    let open_origin = "nodes:\n  - {role: origin, name: o, rtmp: \"127.0.0.1:0\", http: \"127.0.0.1:0\", relay: \"127.0.0.1:0\", apps: [{name: live, security: {publish: open}}]}\n";
    for (cluster, wanted) in [
        (
            "{secret: change-me}",
            "cluster.secret: still the placeholder",
        ),
        (
            "{secret: bench}",
            "cluster.secret: 5 characters; at least 16",
        ),
        (
            "{store: \"mongodb://sf:change-me@db:27017/\", secret: a-long-random-secret}",
            "cluster.store: the MongoDB password: still the placeholder",
        ),
    ] {
        let yaml = format!("cluster: {cluster}\n{open_origin}");
        let e = one_error(&yaml);
        assert!(e.contains(wanted) && e.contains("local_demo: true"), "{e}");
        assert!(
            !e.contains("change-me") && !e.contains("bench"),
            "secret echoed: {e}"
        );
        assert!(errors(&format!("local_demo: true\n{yaml}")).is_empty());
    }
    let stats = "nodes:\n  - role: lb\n    name: l\n    stats: {bind: \"127.0.0.1:0\", auth: {user: admin, password: admin}}\n    frontends: [{name: f, mode: tcp, bind: [\"127.0.0.1:0\"], backend: b}]\n    backends: [{name: b, mode: tcp, servers: [{name: s, addr: \"127.0.0.1:1\"}]}]\n";
    let e = one_error(stats);
    assert!(
        e.contains("stats.auth.password: a password guessed first"),
        "{e}"
    );
    let e = one_error(&format!(
        "{EDGE}    apps: [{{name: live, webhook: {{url: \"ftp://x\", secret: 0123456789abcdef}}}}]\n"
    ));
    assert!(
        e.contains("apps[0].webhook.url: `ftp://x` is not an http"),
        "{e}"
    );
}

#[test]
fn rest_access_is_checked() {
    use ipnet::IpNet;
    let NodeConfig::Media(m) = &convert(EDGE, Path::new("t.yaml")).unwrap().nodes[0] else {
        panic!("media")
    };
    let loopback: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    assert_eq!(
        (&m.rest.allowed, &m.rest.trusted_proxies),
        (&loopback, &loopback)
    );
    assert!(m.rest.jwt.is_none() && m.rest.cors_origins.is_empty());
    let yaml = format!(
        "{EDGE}    rest: {{remote_allowed_cidrs: [10.1.2.3/8, \"192.0.2.7\"], trusted_proxies: [], cors_origins: [\"https://Console.example.com/\"], jwt_secret: 0123456789abcdef0123}}\n"
    );
    let c = convert(&yaml, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media")
    };
    assert_eq!(
        m.rest.allowed,
        vec![
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "192.0.2.7/32".parse().unwrap()
        ]
    );
    assert!(m.rest.trusted_proxies.is_empty());
    assert_eq!(m.rest.cors_origins, ["https://console.example.com"]);
    let e = errors(&format!(
        "{EDGE}    rest: {{remote_allowed_cidrs: [10.0.0.0/33], cors_origins: [\"*\"], jwt_secret: short}}\n"
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("rest.remote_allowed_cidrs[0]: `10.0.0.0/33` is not"),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains("rest.jwt_secret: at least 16")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rest.cors_origins[0]: `*` is not an origin")),
        "{e:?}"
    );
}

#[test]
fn app_security_is_checked() {
    use crate::config::{PlayRule, PublishRule, Secret};
    let app = |entry: &str| format!("{EDGE}    apps: [{entry}]\n");
    let c = convert(
        &app("{name: live, security: {publish: jwt, play: jwt, jwt_secret: 0123456789abcdef}}"),
        Path::new("t.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media")
    };
    let key = Secret::new("0123456789abcdef");
    assert_eq!(m.apps[0].security.publish, PublishRule::Jwt(key.clone()));
    assert_eq!(m.apps[0].security.play, PlayRule::Jwt(key));
    // The older key means `publish: hmac`.
    let c = convert(
        &app("{name: live, publish_token_secret: s3cret-s3cret-s3cret}"),
        Path::new("t.yaml"),
    )
    .unwrap();
    let NodeConfig::Media(m) = &c.nodes[0] else {
        panic!("media")
    };
    assert_eq!(
        m.apps[0].security.publish,
        PublishRule::Hmac(Secret::new("s3cret-s3cret-s3cret"))
    );
    for (entry, wanted) in [
        (
            "{name: live, security: {play: jwt}}",
            "apps[0].security.jwt_secret: required by `play: jwt`",
        ),
        (
            "{name: live, security: {publish: jwt, jwt_secret: short}}",
            "apps[0].security.jwt_secret: at least 16 characters",
        ),
        (
            "{name: live, security: {publish: hmac}}",
            "apps[0].publish_token_secret: required by `security.publish: hmac`",
        ),
        (
            "{name: live, publish_token_secret: s3cret-s3cret-s3cret, security: {publish: open}}",
            "apps[0].publish_token_secret: only with `security.publish: hmac`",
        ),
        (
            "{name: live, security: {publish: maybe}}",
            "apps[0].security.publish",
        ),
    ] {
        let e = one_error(&app(entry));
        assert!(e.contains(wanted), "{entry}: {e}");
        assert!(!e.contains("short\""), "secret echoed: {e}");
    }
}

#[test]
fn balance_stream_is_checked() {
    let lb = |fe_mode: &str, backend: &str| {
        format!(
            "nodes:\n  - role: lb\n    name: lb1\n    frontends:\n      - {{name: f, mode: {fe_mode}, bind: [\"127.0.0.1:0\"], backend: b}}\n    backends:\n      - {{name: b, {backend}, servers_from: {{role: edge, listener: http}}}}\n"
        )
    };
    let c = convert(
        &lb(
            "http",
            "mode: http, balance: stream, hash_balance_factor: 150, viewer_idle: 30s",
        ),
        Path::new("t.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let NodeConfig::Lb(l) = &c.nodes[0] else {
        panic!("lb")
    };
    assert_eq!(
        l.backends[0].balance,
        crate::config::Balance::Stream {
            factor_percent: 150,
            viewer_idle: std::time::Duration::from_secs(30)
        }
    );
    // RTMP frontends read the stream name: fine on mode tcp backends.
    assert!(errors(&lb("rtmp", "mode: tcp, balance: stream")).is_empty());
    let e = one_error(&lb("tcp", "mode: tcp, balance: stream"));
    assert!(
        e.contains("nodes[0].frontends[0].backend: `b` has `balance: stream`")
            && e.contains("use mode rtmp"),
        "{e}"
    );
    let e = one_error(&lb(
        "http",
        "mode: http, balance: stream, hash_balance_factor: 100",
    ));
    assert!(
        e.contains("nodes[0].backends[0].hash_balance_factor: a percentage"),
        "{e}"
    );
    let e = one_error(&lb(
        "http",
        "mode: http, balance: stream, viewer_idle: 10ms",
    ));
    assert!(e.contains("viewer_idle: between 1s and 1h"), "{e}");
    let e = one_error(&lb("http", "mode: http, hash_balance_factor: 125"));
    assert!(
        e.contains("hash_balance_factor: only backends with `balance: stream`"),
        "{e}"
    );
}

#[test]
fn mongodb_needs_a_shared_secret_and_secrets_never_print() {
    let yaml = format!("cluster: {{store: \"mongodb://u:hunter2@db:27017/\"}}\n{EDGE}");
    let e = one_error(&yaml);
    assert!(e.contains("cluster.secret: required"), "{e}");
    let yaml = format!(
        "cluster: {{store: \"mongodb://u:hunter2@db:27017/\", secret: s3-0123456789abcdef}}\n{EDGE}"
    );
    let c = convert(&yaml, Path::new("t.yaml")).unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3-0123456789abcdef"),
        "{debug}"
    );
}

/// `threads` sizes the process's runtime and every LB node's event loops.
#[test]
fn threads_size_the_process_and_the_lb() {
    let lb = |extra: &str| {
        convert(
            &format!(
                "{extra}nodes:\n  - role: lb\n    name: lb1\n    frontends: [{{name: web, mode: http, bind: [\"127.0.0.1:0\"], backend: b}}]\n    backends: [{{name: b, mode: http, servers: [{{name: s, addr: \"127.0.0.1:1\"}}]}}]\n"
            ),
            Path::new("t.yaml"),
        )
    };
    let c = lb("threads: 3\n").unwrap();
    assert_eq!(c.threads, 3);
    let NodeConfig::Lb(l) = &c.nodes[0] else {
        panic!("an lb node")
    };
    assert_eq!(l.threads, 3);
    assert_eq!(lb("").unwrap().threads, crate::config::default_threads());
    for bad in ["threads: 0\n", "threads: 100000\n"] {
        let e = lb(bad).unwrap_err().to_string();
        assert!(
            e.contains("t.yaml:1:") && e.contains("threads: must be between 1 and 256"),
            "{e}"
        );
    }
}
