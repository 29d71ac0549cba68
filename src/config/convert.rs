//! File structs -> typed [`Config`], with every default applied here and every error collected.
//!
//! Parsing happens in two passes. serde (with `serde_path_to_error` for the key path) catches
//! syntax errors, unknown keys and wrong YAML types; it stops at the first one. The conversion
//! pass then checks every value (durations, sizes, addresses, references between items, duplicate
//! names, listener conflicts) and reports all of its errors at once.

use std::path::Path;
use std::time::Duration;

use super::diag::Diag;
use super::file::{FileConfig, NodeFile, RoleFile};
use super::secret::MIN_SECRET;
use super::{
    ClusterConfig, Config, ConfigError, ConfigErrors, DEFAULT_SHUTDOWN_GRACE, ListenerSpec,
    NodeConfig, Secret, StoreConfig, UriCredentials,
};

/// Default `cluster.heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// Default `cluster.node_timeout`.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses and converts config text.
pub fn convert(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let file = parse_file(text, path)?;
    let mut d = Diag::new(path);
    let config = convert_file(&file, path, &mut d);
    let errors = d.finish();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The serde pass: YAML -> file structs. Errors name the key path.
pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigErrors> {
    let mut key_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, FileConfig>(de).map_err(|e| {
            key_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        let mut message = e.without_snippet().to_string();
        // serde-saphyr appends the position; we print it in front instead.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        // `Spanned` wrappers show up as a `.value` segment; operators never wrote it.
        let key_path = key_path.replace(".value", "");
        let key_path = key_path.trim_end_matches(".?");
        let message = if key_path.is_empty() || key_path == "." || key_path == "?" {
            message
        } else {
            format!("{key_path}: {message}")
        };
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line,
            column,
            message,
        }])
    })
}

fn convert_file(f: &FileConfig, path: &Path, d: &mut Diag) -> Config {
    d.local_demo = f.local_demo.as_ref().is_some_and(|l| l.value);
    let c = f.cluster.as_ref();
    let store = match c.and_then(|c| c.store.as_ref()) {
        None => StoreConfig::Embedded,
        Some(s) if s.value == "embedded" => StoreConfig::Embedded,
        Some(s) if s.value.starts_with("mongodb://") || s.value.starts_with("mongodb+srv://") => {
            if let Some(password) = UriCredentials::of(&s.value).and_then(|c| c.password) {
                d.secret("cluster.store: the MongoDB password", s, password, 0);
            }
            StoreConfig::MongoDb {
                uri: Secret::new(s.value.clone()),
            }
        }
        Some(s) => {
            d.at(
                s,
                "cluster.store: expected `embedded` or a mongodb:// URI".to_owned(),
            );
            StoreConfig::Embedded
        }
    };
    let heartbeat = d.duration(
        "cluster.heartbeat",
        c.and_then(|c| c.heartbeat.as_ref()),
        DEFAULT_HEARTBEAT,
    );
    let node_timeout = d.duration(
        "cluster.node_timeout",
        c.and_then(|c| c.node_timeout.as_ref()),
        DEFAULT_NODE_TIMEOUT,
    );
    if heartbeat.is_zero()
        && let Some(h) = c.and_then(|c| c.heartbeat.as_ref())
    {
        d.at(h, "cluster.heartbeat: must be more than 0".into());
    }
    if node_timeout <= heartbeat
        && let Some(t) = c
            .and_then(|c| c.node_timeout.as_ref())
            .or(c.and_then(|c| c.heartbeat.as_ref()))
    {
        d.at(
            t,
            "cluster.node_timeout: must be longer than cluster.heartbeat".into(),
        );
    }
    let secret = match c.and_then(|c| c.secret.as_ref()) {
        Some(s) if s.value.is_empty() => {
            d.at(s, "cluster.secret: empty".into());
            Secret::new("")
        }
        Some(s) => {
            d.secret("cluster.secret", s, &s.value, MIN_SECRET);
            Secret::new(s.value.clone())
        }
        None => {
            if matches!(store, StoreConfig::MongoDb { .. }) {
                let at = c.and_then(|c| c.store.as_ref()).map(|s| s.referenced);
                if let Some(loc) = at {
                    d.at_location(loc, "cluster.secret: required with a mongodb store (nodes in other processes must share it)".into());
                }
            }
            // One process, embedded store: every node is in this process, so a random secret
            // made at start authenticates them to each other.
            Secret::new(random_secret())
        }
    };
    let database = c
        .and_then(|c| c.database.as_ref())
        .map_or("streamfleet".to_owned(), |db| {
            if db.value.is_empty() || db.value.contains(['/', '\\', '.', ' ', '"', '$']) {
                d.at(
                    db,
                    format!(
                        "cluster.database: `{}` is not a valid MongoDB database name",
                        db.value
                    ),
                );
            }
            db.value.clone()
        });
    let cluster = ClusterConfig {
        store,
        database,
        secret,
        heartbeat,
        node_timeout,
    };

    let shutdown_grace = d.duration(
        "shutdown_grace",
        f.shutdown_grace.as_ref(),
        DEFAULT_SHUTDOWN_GRACE,
    );

    let threads = f.threads.as_ref().map_or_else(super::default_threads, |t| {
        if t.value == 0 || t.value > super::MAX_THREADS {
            d.at(
                t,
                format!("threads: must be between 1 and {}", super::MAX_THREADS),
            );
            super::default_threads()
        } else {
            t.value as usize
        }
    });

    let node_files = f.nodes.as_deref().unwrap_or(&[]);
    if node_files.is_empty() {
        d.at_start("nodes: the file lists no nodes".into());
    }
    let mut nodes = Vec::new();
    for (i, n) in node_files.iter().enumerate() {
        let at = format!("nodes[{i}]");
        check_name(d, &at, n);
        if node_files[..i].iter().any(|o| o.name.value == n.name.value) {
            d.at(
                &n.name,
                format!("{at}.name: duplicate node name `{}`", n.name.value),
            );
        }
        let node = match n.role.value {
            RoleFile::Lb => super::lb_convert::convert_lb(n, &at, threads, d).map(NodeConfig::Lb),
            _ => super::media::convert_media(n, &at, d).map(NodeConfig::Media),
        };
        if let Some(node) = node {
            nodes.push((i, node));
        }
    }
    check_listener_conflicts(d, node_files, &nodes);
    Config {
        source: path.to_owned(),
        cluster,
        shutdown_grace,
        threads,
        nodes: nodes.into_iter().map(|(_, n)| n).collect(),
    }
}

fn check_name(d: &mut Diag, at: &str, n: &NodeFile) {
    let name = &n.name.value;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        d.at(
            &n.name,
            format!(
                "{at}.name: `{name}` is not a valid node name (1-64 of letters, digits, -, _ and .)"
            ),
        );
    }
}

/// Two listeners conflict when they share a port and protocol and either IP is a wildcard or
/// both IPs are equal. Port 0 never conflicts (the OS picks a free port).
fn check_listener_conflicts(d: &mut Diag, files: &[NodeFile], nodes: &[(usize, NodeConfig)]) {
    let mut seen: Vec<(usize, &str, ListenerSpec)> = Vec::new();
    for (i, node) in nodes {
        let listeners = match node {
            NodeConfig::Lb(c) => c.listeners(),
            NodeConfig::Media(c) => c.listeners(),
        };
        for l in listeners {
            if l.addr.port() == 0 {
                continue;
            }
            let clash = seen.iter().find(|(_, _, o)| {
                o.udp == l.udp
                    && o.addr.port() == l.addr.port()
                    && (o.addr.ip() == l.addr.ip()
                        || o.addr.ip().is_unspecified()
                        || l.addr.ip().is_unspecified())
            });
            if let Some((_, other_node, other)) = clash {
                let msg = format!(
                    "nodes[{i}]: listener {} on {} conflicts with listener {} of node `{other_node}` on {}",
                    l.name, l.addr, other.name, other.addr
                );
                d.at(&files[*i].name, msg);
            }
            seen.push((*i, node.name(), l));
        }
    }
}

/// 32 random bytes as hex, from the OS.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    // Without OS randomness the process could not run TLS either; fall back to the clock so
    // that `check` still works, and say so.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::warn!("no OS randomness: the in-process cluster secret is weak");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests;
