//! The `streamfleet` command line: load the config, set up logging, start the nodes, turn
//! signals into a graceful shutdown, and map failures to exit codes.
//!
//! Exit codes: 0 success (including a drained shutdown), 1 runtime failure (a bind, the store),
//! 2 invalid config or usage, 130/143 a second SIGINT/SIGTERM during the drain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use streamfleet::config::edit::{
    EditError, PASSWORD_ENV, PasswordSource, cluster_store, holds_password, read_password,
    set_store,
};
use streamfleet::config::{Config, ConfigErrors, Secret};
use streamfleet::runtime::Shutdown;
use streamfleet::runtime::shutdown::Drain;
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "streamfleet",
    version,
    about = "Clustered live-streaming server: RTMP ingest, ABR, HLS, QUIC relay, load balancer"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run every node listed in the config file in this process.
    Run {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or exit 2 printing every error as FILE:LINE:COLUMN: message.
    Check {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Switch the cluster store in place (keeps comments, owner and permissions):
    /// `mode cluster HOST|URI [USER] [--password-stdin]` or `mode standalone`.
    Mode {
        #[command(subcommand)]
        mode: ModeCommand,
    },
}

#[derive(Subcommand)]
enum ModeCommand {
    /// Use MongoDB at HOST[:PORT] (default port 27017), optionally with credentials, or at a
    /// full mongodb:// or mongodb+srv:// URI. The password comes from --password-stdin or
    /// STREAMFLEET_MONGODB_PASSWORD.
    Cluster {
        /// MongoDB host with an optional :port, or a full mongodb:// or mongodb+srv:// URI
        /// (used as it is; a password from stdin or the environment fills in its user).
        host: String,
        /// User (authSource=admin); with a full URI, write the user in the URI.
        user: Option<String>,
        /// Password. Visible to other users in the process list and shell history: prefer
        /// --password-stdin or STREAMFLEET_MONGODB_PASSWORD.
        #[arg(
            requires = "user",
            conflicts_with = "password_stdin",
            allow_hyphen_values = true
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Config file to edit.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Use the embedded store (every node in one process).
    Standalone {
        /// Config file to edit.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok ({} nodes)", config.display(), c.nodes.len());
                ExitCode::SUCCESS
            }
            Err(errors) => config_errors(&errors),
        },
        Command::Mode { mode } => run_mode(mode),
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => return config_errors(&errors),
            };
            let threads = config.threads;
            let built = without_panicking(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            });
            let runtime = match built {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    eprintln!("streamfleet: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
                None => {
                    eprintln!(
                        "streamfleet: cannot start the async runtime (its signal driver could not be made: out of file descriptors?)"
                    );
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config)) {
                Ok(code) => code,
                Err(e) => {
                    let report = report(e.as_ref());
                    tracing::error!("{report}");
                    eprintln!("streamfleet: {report}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// An error and its causes on one line, `a: b: c`, each cause once (some errors already quote
/// their cause in their own message).
fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn config_errors(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    ExitCode::from(2)
}

fn run_mode(mode: ModeCommand) -> ExitCode {
    let (path, value) = match mode {
        ModeCommand::Cluster {
            host,
            user,
            password,
            password_stdin,
            config,
        } => {
            if password.is_some() || holds_password(&host) {
                eprintln!(
                    "streamfleet mode: warning: a password on the command line is visible to other users in the process list and shell history; use --password-stdin or {PASSWORD_ENV} instead"
                );
            }
            let password = if password_stdin {
                match read_password(std::io::stdin().lock()) {
                    Ok(p) => Some((p, PasswordSource::Stdin)),
                    Err(e) => return mode_error(&e),
                }
            } else if let Some(p) = password {
                Some((Secret::new(p), PasswordSource::Argument))
            } else {
                match std::env::var(PASSWORD_ENV) {
                    Ok(p) if !p.is_empty() => Some((Secret::new(p), PasswordSource::Environment)),
                    Ok(_) | Err(std::env::VarError::NotPresent) => None,
                    Err(std::env::VarError::NotUnicode(_)) => {
                        eprintln!("streamfleet mode: {PASSWORD_ENV} is not valid UTF-8");
                        return ExitCode::from(2);
                    }
                }
            };
            let password = password.as_ref().map(|(p, source)| (p, *source));
            match cluster_store(&host, user.as_deref(), password) {
                Ok(uri) => (config, uri),
                Err(e) => return mode_error(&e),
            }
        }
        ModeCommand::Standalone { config } => (config, Secret::new("embedded")),
    };
    let path = &path;
    match set_store(path, value.expose()) {
        Ok(change) => {
            if !change.changed {
                println!("{}: cluster.store already {}", path.display(), change.after);
            } else if change.before == change.after {
                println!(
                    "{}: cluster.store: {}: new password",
                    path.display(),
                    change.after
                );
            } else {
                println!(
                    "{}: cluster.store: {} -> {}",
                    path.display(),
                    change.before,
                    change.after
                );
            }
            if change.holds_password && change.mode & 0o004 != 0 {
                eprintln!(
                    "streamfleet mode: warning: {} is readable by every user (mode {:04o}) and holds the MongoDB password; chmod 600 it",
                    path.display(),
                    change.mode
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => mode_error(&e),
    }
}

fn mode_error(e: &EditError) -> ExitCode {
    match e {
        EditError::Invalid(errors) => config_errors(errors),
        e => {
            eprintln!("streamfleet mode: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    let (mut term, mut int, mut hup) = signal_handlers()?;
    let _ctx = streamfleet::node::start(&config, shutdown.clone()).await?;

    // SIGHUP re-reads the LB's certificate files (each frontend listens for it); here it only
    // must not end the process, as its default action would.
    let first = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => tracing::info!("SIGHUP: re-reading certificate files"),
        }
    };
    tracing::info!(
        signal = first,
        grace = %humantime::format_duration(config.shutdown_grace),
        open = shutdown.open_connections(),
        "draining: no new connections, open ones get the grace period"
    );
    tokio::select! {
        outcome = shutdown.shutdown(config.shutdown_grace) => {
            match outcome {
                Drain::Clean => tracing::info!("drained; exiting"),
                Drain::Forced(n) => tracing::info!(closed = n, "grace period over; closed remaining connections"),
            }
            Ok(ExitCode::SUCCESS)
        }
        _ = term.recv() => {
            tracing::warn!("second signal: exiting at once");
            Ok(ExitCode::from(143))
        }
        _ = int.recv() => {
            tracing::warn!("second signal: exiting at once");
            Ok(ExitCode::from(130))
        }
    }
}

/// Runs `f`, which may panic inside a dependency where it should have failed (tokio panics when
/// it cannot make the socket pair of its signal driver, out of file descriptors): `None` then,
/// without the panic message, so that such a start failure reads like any other.
fn without_panicking<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    result.ok()
}

/// SIGTERM, SIGINT and SIGHUP streams.
fn signal_handlers() -> anyhow::Result<(Signal, Signal, Signal)> {
    let made = without_panicking(|| {
        let term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        anyhow::Ok((term, int, hup))
    });
    made.unwrap_or_else(|| {
        Err(anyhow::anyhow!(
            "cannot install the signal handlers (out of file descriptors?)"
        ))
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // No colours: every control character of an event is written out (a stream name with a
    // newline must not forge a log line), and colour codes are control characters too.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(streamfleet::runtime::logline::EscapedStderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Leaf(&'static str);

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Wrap {
        text: &'static str,
        #[source]
        source: Leaf,
    }

    #[test]
    fn reports_each_cause_once() {
        let e = Wrap {
            text: "node o1: `transcode`: cannot start the transcoder",
            source: Leaf("cannot build the transcode thread pool"),
        };
        assert_eq!(
            report(&e),
            "node o1: `transcode`: cannot start the transcoder: cannot build the transcode thread pool"
        );
        let quoting = Wrap {
            text: "cluster store unavailable: connection refused",
            source: Leaf("connection refused"),
        };
        assert_eq!(
            report(&quoting),
            "cluster store unavailable: connection refused"
        );
    }
}
