//! In-place edits of a config file that keep its comments and layout: the `streamfleet mode`
//! command (Ant Media's `change_server_mode.sh`) rewrites `cluster.store` only.
//!
//! The serde pass gives the byte span of the current `store` value; the edit replaces exactly
//! those bytes (or inserts one line when the key is missing), the result is validated like any
//! config, and only then written (atomically, through a temporary file and a rename).

use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::convert::parse_file;
use super::{Config, ConfigErrors, mask_uri};

/// Why an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file (before or after the edit) is not a valid config.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    /// The file's layout cannot be edited safely by a program.
    #[error("{0}")]
    Layout(String),
}

/// What `mode` changed, with credentials masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChange {
    /// Previous value, masked.
    pub before: String,
    /// New value, masked.
    pub after: String,
}

/// Builds the MongoDB URI for `mode cluster HOST [USER PASSWORD]`. The port defaults to 27017;
/// user and password are percent-encoded.
pub fn mongodb_uri(host: &str, credentials: Option<(&str, &str)>) -> String {
    let host = if host.contains(':') && !host.starts_with('[') || host.contains("]:") {
        host.to_owned()
    } else {
        format!("{host}:27017")
    };
    match credentials {
        Some((user, password)) => format!(
            "mongodb://{}:{}@{host}/?authSource=admin",
            percent_encode(user),
            percent_encode(password)
        ),
        None => format!("mongodb://{host}/"),
    }
}

/// What a user name or password may keep unescaped in a URI's user-info (RFC 3986
/// unreserved characters); everything else is percent-encoded.
const USER_INFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, USER_INFO).to_string()
}

/// Sets `cluster.store` in the file at `path` to `value`, validating the result first.
pub fn set_store(path: &Path, value: &str) -> Result<StoreChange, EditError> {
    let io = |source| EditError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let (edited, before) = with_store(&text, path, value)?;
    Config::parse(&edited, path)?;
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, &edited).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(StoreChange {
        before: mask_uri(&before),
        after: mask_uri(value),
    })
}

/// Returns the text with `cluster.store` set, and the previous value (`embedded` when absent).
pub fn with_store(text: &str, path: &Path, value: &str) -> Result<(String, String), EditError> {
    let file = parse_file(text, path)?;
    let store = file.cluster.as_ref().and_then(|c| c.store.as_ref());
    if let Some(store) = store {
        let span = store.referenced.span();
        let start = span.byte_offset().map(|o| o as usize);
        let len = span.byte_len().map(|l| l as usize);
        let (Some(start), Some(len)) = (start, len) else {
            return Err(EditError::Layout(
                "cannot locate cluster.store in the file".into(),
            ));
        };
        let end = start + len;
        let old = text
            .get(start..end)
            .ok_or_else(|| EditError::Layout("cannot locate cluster.store in the file".into()))?;
        // The span covers the scalar as written; keep its quoting style.
        let replacement = match old.chars().next() {
            Some('"') => format!("\"{value}\""),
            Some('\'') => format!("'{value}'"),
            _ => value.to_owned(),
        };
        let mut out = String::with_capacity(text.len() + value.len());
        out.push_str(&text[..start]);
        out.push_str(&replacement);
        out.push_str(&text[end..]);
        return Ok((out, store.value.clone()));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let cluster_line = lines.iter().position(|l| {
        let t = l.trim_end();
        t == "cluster:"
            || t.starts_with("cluster:") && t["cluster:".len()..].trim_start().starts_with('#')
    });
    let mut out = String::with_capacity(text.len() + value.len() + 16);
    match cluster_line {
        Some(i) => {
            let indent = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(|l| l.len() - l.trim_start().len())
                .filter(|n| *n > 0)
                .unwrap_or(2);
            for (j, l) in lines.iter().enumerate() {
                out.push_str(l);
                if j == i {
                    if !l.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(&format!("{}store: {value}\n", " ".repeat(indent)));
                }
            }
        }
        None if file.cluster.is_some() => {
            return Err(EditError::Layout(
                "the cluster section is written in flow style; set cluster.store by hand".into(),
            ));
        }
        None => {
            out.push_str(&format!("cluster:\n  store: {value}\n"));
            out.push_str(text);
        }
    }
    Ok((out, "embedded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "# one box\ncluster:\n  # where state lives\n  store: embedded   # default\n  secret: s3cret\nnodes:\n  - {role: edge, name: e1, http: \"127.0.0.1:0\"}\n";

    #[test]
    fn replaces_the_value_and_keeps_comments() {
        let uri = mongodb_uri("db1", Some(("admin", "p@ss word")));
        let (out, before) = with_store(BASE, Path::new("t.yaml"), &uri).unwrap();
        assert_eq!(before, "embedded");
        assert!(
            out.contains(
                "  store: mongodb://admin:p%40ss%20word@db1:27017/?authSource=admin   # default\n"
            ),
            "{out}"
        );
        assert!(out.starts_with("# one box\ncluster:\n  # where state lives\n"));
        assert!(Config::parse(&out, Path::new("t.yaml")).is_ok());
        let (back, before) = with_store(&out, Path::new("t.yaml"), "embedded").unwrap();
        assert_eq!(back, BASE);
        assert!(before.starts_with("mongodb://admin:"));
    }

    #[test]
    fn keeps_quotes() {
        let text = BASE.replace("store: embedded", "store: \"embedded\"");
        let (out, _) = with_store(&text, Path::new("t.yaml"), "mongodb://h:1/").unwrap();
        assert!(out.contains("store: \"mongodb://h:1/\""), "{out}");
    }

    #[test]
    fn inserts_a_missing_key() {
        let text = BASE.replace("  store: embedded   # default\n", "");
        let (out, before) = with_store(&text, Path::new("t.yaml"), "mongodb://h:27017/").unwrap();
        assert_eq!(before, "embedded");
        assert!(
            out.contains("cluster:\n  store: mongodb://h:27017/\n  # where state lives\n"),
            "{out}"
        );
        let text = "nodes:\n  - {role: edge, name: e1, http: \"127.0.0.1:0\"}\n";
        let (out, _) = with_store(text, Path::new("t.yaml"), "embedded").unwrap();
        assert!(out.starts_with("cluster:\n  store: embedded\nnodes:"));
    }

    #[test]
    fn builds_uris_with_encoded_credentials() {
        assert_eq!(
            mongodb_uri("h", Some(("a b", "p@ss:w/~"))),
            "mongodb://a%20b:p%40ss%3Aw%2F~@h:27017/?authSource=admin"
        );
        assert_eq!(mongodb_uri("h:2000", None), "mongodb://h:2000/");
        assert_eq!(mongodb_uri("h", None), "mongodb://h:27017/");
    }
}
