//! Collecting the errors of one config file: each at the position of the value it is about, so
//! that `check` can print `FILE:LINE:COLUMN: key: what is wrong` for all of them at once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::ConfigError;
use super::file::Raw;
use super::values::{parse_addr, parse_duration};

/// Collects errors for one file.
pub(crate) struct Diag<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
    /// The file says `local_demo: true`: weak secrets pass.
    pub(crate) local_demo: bool,
}

impl<'a> Diag<'a> {
    /// Every error recorded, in file order.
    pub(crate) fn finish(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors
    }

    /// Records an error at the top of the file (nothing more precise to point at).
    pub(crate) fn at_start(&mut self, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: 1,
            column: 1,
            message,
        });
    }

    pub(crate) fn new(file: &'a Path) -> Self {
        Diag {
            file,
            errors: Vec::new(),
            local_demo: false,
        }
    }

    /// The config file (anchors relative paths).
    pub(crate) fn file(&self) -> &'a Path {
        self.file
    }

    /// Records an error at a value's position.
    pub(crate) fn at<T>(&mut self, value: &Spanned<T>, message: String) {
        self.at_location(value.referenced, message);
    }

    pub(crate) fn at_location(&mut self, loc: Location, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: loc.line() as usize,
            column: loc.column() as usize,
            message,
        });
    }

    /// A duration value, or `default` when absent; errors are recorded.
    pub(crate) fn duration(&mut self, key: &str, raw: Option<&Raw>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(r) => parse_duration(&r.value).unwrap_or_else(|e| {
                self.at(r, format!("{key}: {e}"));
                default
            }),
        }
    }

    /// Checks a configured secret (at `at`, never printed): not a placeholder we ship and at
    /// least `min_len` characters, unless the file is a local demo.
    pub(crate) fn secret<T>(&mut self, key: &str, at: &Spanned<T>, value: &str, min_len: usize) {
        if self.local_demo {
            return;
        }
        if let Some(why) = super::secret::weakness(value, min_len) {
            self.at(
                at,
                format!(
                    "{key}: {why}; use a random value (`openssl rand -hex 24`), or mark a \
                     one-box demo file with `local_demo: true`"
                ),
            );
        }
    }

    /// An address value; errors are recorded.
    pub(crate) fn addr(&mut self, key: &str, raw: &Raw) -> Option<SocketAddr> {
        parse_addr(&raw.value)
            .map_err(|e| self.at(raw, format!("{key}: {e}")))
            .ok()
    }
}
