//! Validated, typed configuration.
//!
//! YAML text -> [`file`] structs (serde, unknown keys refused) -> [`convert`] checks every value
//! and applies every default in one place -> [`Config`]. Components receive only their own
//! sub-config. Every error names `FILE:LINE:COLUMN` and the key.

pub mod convert;
mod diag;
pub mod edit;
pub mod file;
mod lb;
mod lb_convert;
mod media;
mod secret;
mod store_uri;
pub mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use lb::*;
pub use media::*;
pub use secret::{Secret, UriCredentials, mask_uri};

/// Default for `shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most worker threads `threads` may ask for.
pub const MAX_THREADS: u64 = 256;

/// Default for `threads`: the CPUs this process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The whole validated config of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (relative paths inside it are resolved against its directory).
    pub source: PathBuf,
    /// Shared cluster settings.
    pub cluster: ClusterConfig,
    /// How long a SIGTERM waits for open connections.
    pub shutdown_grace: Duration,
    /// Worker threads: the async runtime's, and each LB node's event loops.
    pub threads: usize,
    /// Nodes this process runs, in file order.
    pub nodes: Vec<NodeConfig>,
}

/// `cluster:`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where the cluster state lives.
    pub store: StoreConfig,
    /// MongoDB database name.
    pub database: String,
    /// Authenticates nodes to each other (relay, internal API).
    pub secret: Secret,
    /// Node and lease refresh period.
    pub heartbeat: Duration,
    /// A node silent this long is dead; its stream leases expire.
    pub node_timeout: Duration,
}

/// Cluster store selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In-process store shared by the nodes of this process.
    Embedded,
    /// MongoDB, reached with this URI (credentials inside: never logged).
    MongoDb {
        /// Full connection string.
        uri: Secret,
    },
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Load balancer.
    Lb,
    /// Ingest, transcode, package, relay to edges.
    Origin,
    /// Pull from origins, serve viewers.
    Edge,
    /// Origin and edge at once.
    Standalone,
}

impl Role {
    /// The name used in config files, the store and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lb => "lb",
            Role::Origin => "origin",
            Role::Edge => "edge",
            Role::Standalone => "standalone",
        }
    }

    /// Parses the config/store spelling.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "lb" => Role::Lb,
            "origin" => Role::Origin,
            "edge" => Role::Edge,
            "standalone" => Role::Standalone,
            _ => return None,
        })
    }
}

impl From<file::RoleFile> for Role {
    fn from(r: file::RoleFile) -> Role {
        match r {
            file::RoleFile::Lb => Role::Lb,
            file::RoleFile::Origin => Role::Origin,
            file::RoleFile::Edge => Role::Edge,
            file::RoleFile::Standalone => Role::Standalone,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node.
#[derive(Debug, Clone)]
pub enum NodeConfig {
    /// `role: lb`.
    Lb(LbConfig),
    /// `role: origin | edge | standalone`.
    Media(MediaConfig),
}

impl NodeConfig {
    /// The node's unique name.
    pub fn name(&self) -> &str {
        match self {
            NodeConfig::Lb(c) => &c.name,
            NodeConfig::Media(c) => &c.name,
        }
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        match self {
            NodeConfig::Lb(_) => Role::Lb,
            NodeConfig::Media(c) => c.role,
        }
    }
}

/// A listener a node binds, for readiness lines and address-conflict checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// `rtmp`, `http`, `relay`, `stats` or `frontend:<name>`.
    pub name: String,
    /// Where to bind.
    pub addr: SocketAddr,
    /// UDP (the QUIC relay) rather than TCP.
    pub udp: bool,
}

/// One configuration error at a position in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every error found in a config file, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        convert::convert(text, path)
    }

    /// Resolves a path from the config file against the file's directory.
    pub fn resolve(source: &Path, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            source.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}
