//! The readiness contract on stdout: one JSON line per bound listener, then one `ready` line
//! once every node is up. Tests and process supervisors parse these lines; logs go to stderr.

use std::io::Write;
use std::net::SocketAddr;

use serde_json::json;

/// Prints `{"event":"listening","node":..,"listener":..,"addr":..}`.
pub fn listening(node: &str, listener: &str, addr: SocketAddr) {
    emit(
        &json!({"event": "listening", "node": node, "listener": listener, "addr": addr.to_string()}),
    );
}

/// Prints `{"event":"ready"}`.
pub fn ready() {
    emit(&json!({"event": "ready"}));
}

fn emit(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // Stdout closed by the supervisor is not a reason to stop serving.
    if let Err(e) = writeln!(out, "{v}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "cannot write readiness line to stdout");
    }
}
