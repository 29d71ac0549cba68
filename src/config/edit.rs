//! In-place edits of a config file that keep its comments, layout, owner and permissions: the
//! `streamfleet mode` command (Ant Media's `change_server_mode.sh`) rewrites `cluster.store`
//! only.
//!
//! [`cluster_store`] turns the command's arguments into the store value: a host and credentials
//! become a URI with percent-encoded user-info, a full `mongodb://` or `mongodb+srv://` URI is
//! checked and used as it is. The serde pass gives the byte span of the current `store` value;
//! the edit replaces exactly those bytes (or inserts one line when the key is missing), the
//! result is validated like any config, and only then written: into a temporary file created
//! 0600 in the same folder, given the old file's owner and permission bits, synced, renamed over
//! the old file, and the folder synced. The value holds the MongoDB password, so nothing here
//! ever puts it in an error or a message; [`StoreChange`] carries it masked.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::convert::parse_file;
pub use super::store_uri::{
    PASSWORD_ENV, PasswordSource, cluster_store, holds_password, mongodb_uri, read_password,
};
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
    /// The rewritten file could not be given the old file's owner, so it replaced nothing.
    #[error(
        "{path}: cannot give the rewritten file the owner {uid}:{gid} of the old one (run as that user or as root): {source}"
    )]
    Owner {
        /// The file.
        path: String,
        /// The old file's owner.
        uid: u32,
        /// The old file's group.
        gid: u32,
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
    /// The MongoDB host or URI is malformed. A fixed text: it never quotes the URI, which may
    /// hold a password.
    #[error("invalid MongoDB address: {0}")]
    Address(&'static str),
    /// The user and password arguments do not fit together.
    #[error("{0}")]
    Credentials(&'static str),
}

/// What `mode` changed, with credentials masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChange {
    /// Previous value, masked.
    pub before: String,
    /// New value, masked.
    pub after: String,
    /// Whether the value changed (a new password shows only here: both sides are masked). An
    /// unchanged value leaves the file as it was.
    pub changed: bool,
    /// Permission bits of the file, kept from before the edit: the caller warns when a file
    /// that now holds a password is readable by everyone.
    pub mode: u32,
    /// Whether the new value holds a password.
    pub holds_password: bool,
}

/// Sets `cluster.store` in the file at `path` to `value`, validating the result first, and
/// replaces the file keeping its owner and permission bits.
pub fn set_store(path: &Path, value: &str) -> Result<StoreChange, EditError> {
    let io = |source| EditError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let (edited, before) = with_store(&text, path, value)?;
    Config::parse(&edited, path)?;
    let reread = parse_file(&edited, path)?;
    if reread.cluster.and_then(|c| c.store).map(|s| s.value) != Some(value.to_owned()) {
        return Err(EditError::Layout(
            "the new cluster.store does not read back as written; set it by hand".into(),
        ));
    }
    let changed = before != value;
    let mode = if changed {
        replace_file(path, edited.as_bytes())?
    } else {
        std::fs::metadata(path).map_err(io)?.mode() & 0o7777
    };
    Ok(StoreChange {
        before: mask_uri(&before),
        after: mask_uri(value),
        changed,
        mode,
        holds_password: holds_password(value),
    })
}

/// Replaces the file at `path` (the file a symlink points to, keeping the link) with
/// `contents`, and returns its permission bits. The new text goes into a temporary file in the
/// same folder, created 0600 so that it is never readable by others while the password is
/// written, then given the old file's owner and permission bits, synced and renamed over the
/// old file; the folder is synced last so the rename survives a crash.
fn replace_file(path: &Path, contents: &[u8]) -> Result<u32, EditError> {
    let io = |source| EditError::Io {
        path: path.display().to_string(),
        source,
    };
    let target = std::fs::canonicalize(path).map_err(io)?;
    let old = std::fs::metadata(&target).map_err(io)?;
    let mode = old.mode() & 0o7777;
    let (mut file, mut temp) = create_temp(&target).map_err(io)?;
    let new = file.metadata().map_err(io)?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid())).map_err(|source| {
            EditError::Owner {
                path: path.display().to_string(),
                uid: old.uid(),
                gid: old.gid(),
                source,
            }
        })?;
    }
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temp.path, &target).map_err(io)?;
    temp.keep = true;
    // A canonical path to a file always has a parent folder.
    let folder = target.parent().unwrap_or(Path::new("/"));
    File::open(folder).and_then(|f| f.sync_all()).map_err(io)?;
    Ok(mode)
}

/// A temporary file that is removed when dropped, on every error path before the rename.
struct TempFile {
    /// Where it is.
    path: PathBuf,
    /// Set once it has been renamed over the config file: nothing left to remove.
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot remove a temporary config file");
        }
    }
}

/// Creates `.NAME.PID-N.tmp` beside `target`, new (never an existing file or a symlink) and
/// 0600 (less under the umask).
fn create_temp(target: &Path) -> std::io::Result<(File, TempFile)> {
    let folder = target.parent().unwrap_or(Path::new("/"));
    let name = target.file_name().unwrap_or_default();
    let mut last = None;
    for n in 0..100 {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}-{n}.tmp", std::process::id()));
        let temp = folder.join(temp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => {
                return Ok((
                    file,
                    TempFile {
                        path: temp,
                        keep: false,
                    },
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary file name")))
}

/// `value` as a YAML scalar in the quoting style of the one it replaces (`'`, `"` or plain);
/// plain only when no character could end or change the scalar (flow-style `,[]{}` included).
fn yaml_scalar(value: &str, style: Option<char>) -> String {
    let plain = value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?@!$&()*+;=%".contains(&b));
    match style {
        Some('\'') => format!("'{}'", value.replace('\'', "''")),
        Some('"') => double_quoted(value),
        _ if plain => value.to_owned(),
        _ => double_quoted(value),
    }
}

fn double_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
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
        let replacement = yaml_scalar(
            value,
            old.chars().next().filter(|c| matches!(c, '"' | '\'')),
        );
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
                    out.push_str(&format!(
                        "{}store: {}\n",
                        " ".repeat(indent),
                        yaml_scalar(value, None)
                    ));
                }
            }
        }
        None if file.cluster.is_some() => {
            return Err(EditError::Layout(
                "the cluster section is written in flow style; set cluster.store by hand".into(),
            ));
        }
        None => {
            out.push_str(&format!(
                "cluster:\n  store: {}\n",
                yaml_scalar(value, None)
            ));
            out.push_str(text);
        }
    }
    Ok((out, "embedded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const BASE: &str = "# one box\ncluster:\n  # where state lives\n  store: embedded   # default\n  secret: s3cret-0123456789ab\nnodes:\n  - {role: edge, name: e1, http: \"127.0.0.1:0\"}\n";

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

    /// The written `cluster.store`, read back through the serde pass.
    fn store_of(text: &str) -> String {
        let file = parse_file(text, Path::new("t.yaml")).unwrap();
        file.cluster.unwrap().store.unwrap().value
    }

    #[test]
    fn quotes_values_a_plain_scalar_cannot_hold() {
        // Flow style: a `,` (replica set seed list) would end a plain scalar.
        let text = "cluster: {store: embedded, secret: s}\nnodes:\n  - {role: edge, name: e1, http: \"127.0.0.1:0\"}\n";
        let uri = "mongodb://h1:1,h2:2/";
        let (out, _) = with_store(text, Path::new("t.yaml"), uri).unwrap();
        assert!(
            out.starts_with("cluster: {store: \"mongodb://h1:1,h2:2/\", secret: s}"),
            "{out}"
        );
        assert_eq!(store_of(&out), uri);
        // A `'` inside a single-quoted value is doubled.
        let text = BASE.replace("store: embedded", "store: 'embedded'");
        let uri = "mongodb://h/?appName=it's";
        let (out, _) = with_store(&text, Path::new("t.yaml"), uri).unwrap();
        assert!(out.contains("store: 'mongodb://h/?appName=it''s'"), "{out}");
        assert_eq!(store_of(&out), uri);
        // An inserted key too.
        let text = BASE.replace("  store: embedded   # default\n", "");
        let (out, _) = with_store(&text, Path::new("t.yaml"), "mongodb://a,b/").unwrap();
        assert_eq!(store_of(&out), "mongodb://a,b/");
    }

    /// Sets an owner that is not the one a new file gets, when the test may (as root), and
    /// returns the file's (mode, uid, gid).
    fn prepare(path: &Path, mode: u32) -> (u32, u32, u32) {
        std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
        if std::fs::metadata(path).unwrap().uid() == 0 {
            std::os::unix::fs::chown(path, Some(4321), Some(4322)).unwrap();
        }
        let m = std::fs::metadata(path).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
        let m = std::fs::metadata(path).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn set_store_keeps_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, BASE).unwrap();
        let kept = prepare(&path, 0o600);
        let uri = mongodb_uri("db1", Some(("admin", "hunter2")));
        let change = set_store(&path, &uri).unwrap();
        assert_eq!(mode_and_owner(&path), kept);
        assert_eq!(
            (
                change.mode,
                change.holds_password,
                change.after.contains("hunter2")
            ),
            (0o600, true, false)
        );
        assert_eq!(store_of(&std::fs::read_to_string(&path).unwrap()), uri);
        assert_eq!(entries(dir.path()), ["c.yaml"], "no temporary file left");

        let change = set_store(&path, "embedded").unwrap();
        assert_eq!(mode_and_owner(&path), kept);
        assert!(!change.holds_password);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), BASE);

        // The bits are copied, not forced to 0600.
        let kept = prepare(&path, 0o640);
        assert!(set_store(&path, &uri).unwrap().changed);
        assert_eq!(mode_and_owner(&path), kept);

        // Only a new password: a change, although both sides print alike.
        let rotated = mongodb_uri("db1", Some(("admin", "hunter3")));
        let change = set_store(&path, &rotated).unwrap();
        assert!(change.changed && change.before == change.after);
        // The same value again: the file is not rewritten.
        let inode = std::fs::metadata(&path).unwrap().ino();
        assert!(!set_store(&path, &rotated).unwrap().changed);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
    }

    #[test]
    fn set_store_edits_a_symlinks_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        let link = dir.path().join("link.yaml");
        std::fs::write(&real, BASE).unwrap();
        let kept = prepare(&real, 0o600);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_store(&link, "mongodb://h:1/").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            store_of(&std::fs::read_to_string(&real).unwrap()),
            "mongodb://h:1/"
        );
        assert_eq!(mode_and_owner(&real), kept);
        assert_eq!(entries(dir.path()), ["link.yaml", "real.yaml"]);
    }

    #[test]
    fn an_invalid_result_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, BASE).unwrap();
        assert!(matches!(
            set_store(&path, "nonsense"),
            Err(EditError::Invalid(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), BASE);
        assert_eq!(entries(dir.path()), ["c.yaml"]);
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn full_uris_are_used_as_they_are() {
        for uri in [
            "mongodb+srv://admin:hunt%40er2@cluster0.ab1cd.mongodb.net/streamfleet?retryWrites=true&w=majority",
            "mongodb+srv://cluster0.example.net/",
            "mongodb://u:p@db1:27017,db2,[::1]:27018/db?replicaSet=rs0&authSource=admin",
            "mongodb://%2Ftmp%2Fmongodb-27017.sock",
        ] {
            assert_eq!(cluster_store(uri, None, None).unwrap().expose(), uri);
        }
        // The environment's password is a fallback: no user to give it to, or a password
        // already there, and it is left out.
        let env = secret("from-env");
        for uri in ["mongodb://db1/", "mongodb://u:p@db1/"] {
            let got = cluster_store(uri, None, Some((&env, PasswordSource::Environment)));
            assert_eq!(got.unwrap().expose(), uri);
        }
    }

    #[test]
    fn a_password_from_stdin_or_the_environment_fills_in_the_uris_user() {
        for source in [PasswordSource::Stdin, PasswordSource::Environment] {
            let got = cluster_store(
                "mongodb+srv://ad%20min@c.example.net/?authSource=admin",
                None,
                Some((&secret("p@ss:w/rd"), source)),
            );
            assert_eq!(
                got.unwrap().expose(),
                "mongodb+srv://ad%20min:p%40ss%3Aw%2Frd@c.example.net/?authSource=admin"
            );
        }
        let p = secret("hunter2");
        for (uri, user) in [
            ("mongodb://u:other@h/", None),
            ("mongodb://h/", None),
            ("mongodb://u@h/", Some("u")),
        ] {
            let e = cluster_store(uri, user, Some((&p, PasswordSource::Stdin))).unwrap_err();
            assert!(matches!(e, EditError::Credentials(_)), "{uri}: {e}");
        }
    }

    #[test]
    fn host_user_and_password_build_the_uri() {
        let p = secret("hunter2");
        for source in [
            PasswordSource::Argument,
            PasswordSource::Stdin,
            PasswordSource::Environment,
        ] {
            let got = cluster_store("db1", Some("admin"), Some((&p, source))).unwrap();
            assert_eq!(
                got.expose(),
                "mongodb://admin:hunter2@db1:27017/?authSource=admin"
            );
        }
        assert_eq!(
            cluster_store("db1", None, Some((&p, PasswordSource::Environment)))
                .unwrap()
                .expose(),
            "mongodb://db1:27017/"
        );
        let no_password = cluster_store("db1", Some("admin"), None).unwrap_err();
        assert!(
            no_password.to_string().contains("--password-stdin"),
            "{no_password}"
        );
        let no_user = cluster_store("db1", None, Some((&p, PasswordSource::Stdin)));
        assert!(matches!(no_user, Err(EditError::Credentials(_))));
        let empty = cluster_store(
            "db1",
            Some("admin"),
            Some((&secret(""), PasswordSource::Stdin)),
        );
        assert!(matches!(empty, Err(EditError::Credentials(_))));
    }

    #[test]
    fn malformed_addresses_are_refused_without_quoting_them() {
        for (host, why) in [
            ("http://admin:hunter2@db1/", "mongodb://"),
            ("admin:hunter2@db1", "host name"),
            ("mongodb+srv://admin:hunter2@db1:27017/", "without a port"),
            ("mongodb+srv://admin:hunter2@db1,db2/", "exactly one"),
            ("mongodb://admin:hunt?er2@db1/", "%3F"),
            ("mongodb://admin:hunt#er2@db1/", "password"),
            ("mongodb://admin:hunt%zzer2@db1/", "password"),
            ("mongodb://admin:hunter 2@db1/", "percent-encoded"),
            ("mongodb://:hunter2@db1/", "no user"),
            ("mongodb://admin:hunter2@/", "empty host"),
            ("mongodb://admin:hunter2@db1:0/", "port"),
            ("mongodb://admin:hunter2@db1:hunter2/", "port"),
            ("mongodb://admin:hunter2@[::1/", "`]`"),
            ("mongodb://admin:hunter2@db_1!/", "host name"),
            ("db1:hunter2", "port"),
        ] {
            let e = cluster_store(host, None, None).unwrap_err().to_string();
            assert!(e.contains(why), "{host}: {e}");
            assert!(!e.contains("hunt"), "{host}: the message quotes it: {e}");
        }
        let e = cluster_store("mongodb://h/", Some("admin"), None).unwrap_err();
        assert!(matches!(e, EditError::Credentials(_)), "{e}");
    }

    #[test]
    fn reads_one_line_of_password() {
        let read = |input: &str| read_password(input.as_bytes()).map(|p| p.expose().to_owned());
        assert_eq!(read("s3 cret\n").unwrap(), "s3 cret");
        assert_eq!(read("s3cret\r\nnext line\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret").unwrap(), "s3cret");
        assert!(matches!(read(""), Err(EditError::Credentials(_))));
        assert!(matches!(read("\n"), Err(EditError::Credentials(_))));
    }

    #[test]
    fn tells_whether_a_uri_holds_a_password() {
        assert!(holds_password("mongodb+srv://u:p@h/"));
        assert!(!holds_password("mongodb://u@h/"));
        assert!(!holds_password("mongodb://h/?x=1"));
        assert!(!holds_password("db1"));
        assert!(!holds_password("embedded"));
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
