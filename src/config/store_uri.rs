//! The `cluster.store` value of `streamfleet mode cluster`: a MongoDB URI built from a host and
//! credentials (user-info percent-encoded), or a full `mongodb://` / `mongodb+srv://` URI checked
//! and used as it is; the password from an argument, standard input or the environment. No error
//! here quotes the URI or the password.

use std::io::BufRead;
use std::net::Ipv6Addr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::edit::EditError;
use super::{Secret, UriCredentials};

/// The environment variable `mode cluster` takes the MongoDB password from when a user is named
/// and no password is given otherwise.
pub const PASSWORD_ENV: &str = "STREAMFLEET_MONGODB_PASSWORD";

/// Where `mode cluster` got the MongoDB password; decides what a conflict means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// The PASSWORD argument (visible to other users in the process list).
    Argument,
    /// One line of standard input (`--password-stdin`).
    Stdin,
    /// [`PASSWORD_ENV`]: a fallback, ignored when no user is named or the URI already holds a
    /// password.
    Environment,
}

/// The `cluster.store` value for `mode cluster HOST [USER] [password]`.
///
/// HOST is either `host[:port]` (port 27017 by default; a user needs a password and the URI
/// gets `authSource=admin`) or a full `mongodb://` / `mongodb+srv://` URI, used as it is once
/// it parses; a password from standard input or the environment then fills in the URI's user.
pub fn cluster_store(
    host: &str,
    user: Option<&str>,
    password: Option<(&Secret, PasswordSource)>,
) -> Result<Secret, EditError> {
    if password.is_some_and(|(p, _)| p.expose().is_empty()) {
        return Err(EditError::Credentials("the password is empty"));
    }
    let explicit = password.filter(|(_, source)| *source != PasswordSource::Environment);
    if host.contains("://") {
        if user.is_some() {
            return Err(EditError::Credentials(
                "HOST is a full URI: write the user in it (mongodb://USER@HOST/...) instead of giving USER",
            ));
        }
        check_uri(host)?;
        let Some(password) = password else {
            return Ok(Secret::new(host));
        };
        let credentials = UriCredentials::of(host);
        return match credentials {
            Some(c) if c.password.is_none() => {
                // `UriCredentials` splits like `check_uri`: the user-info starts right after
                // `://` and, holding no `:`, is the user alone.
                let at = host.find("://").map_or(0, |i| i + 3) + c.user.len();
                Ok(Secret::new(format!(
                    "{}:{}{}",
                    &host[..at],
                    percent_encode(password.0.expose()),
                    &host[at..]
                )))
            }
            _ if explicit.is_none() => Ok(Secret::new(host)),
            Some(_) => Err(EditError::Credentials(
                "the URI already holds a password: give it only once",
            )),
            None => Err(EditError::Credentials(
                "a password needs a user: write it in the URI (mongodb://USER@HOST/...)",
            )),
        };
    }
    if host.contains(['@', '/', '?']) {
        return Err(EditError::Address(
            "HOST is a host name with an optional :port, or a full mongodb:// or mongodb+srv:// URI",
        ));
    }
    let credentials = match (user, password) {
        (Some(user), Some((password, _))) => Some((user, password.expose())),
        (Some(_), None) => {
            return Err(EditError::Credentials(
                "USER needs a password: --password-stdin, STREAMFLEET_MONGODB_PASSWORD, or the PASSWORD argument",
            ));
        }
        (None, Some(_)) if explicit.is_some() => {
            return Err(EditError::Credentials("a password needs a USER"));
        }
        (None, _) => None,
    };
    let uri = mongodb_uri(host, credentials);
    check_uri(&uri)?;
    Ok(Secret::new(uri))
}

/// Reads a password the way `--password-stdin` takes it: the first line, without its line
/// ending.
pub fn read_password(mut input: impl BufRead) -> Result<Secret, EditError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(|source| EditError::Io {
        path: "standard input".into(),
        source,
    })?;
    let password = match line.strip_suffix('\n') {
        Some(l) => l.strip_suffix('\r').unwrap_or(l),
        None => &line,
    };
    if password.is_empty() {
        return Err(EditError::Credentials(
            "no password on standard input (one line expected)",
        ));
    }
    Ok(Secret::new(password))
}

/// Whether a store value (or a URI given on the command line) holds a password.
pub fn holds_password(uri: &str) -> bool {
    uri.contains("://") && UriCredentials::of(uri).is_some_and(|c| c.password.is_some())
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

/// Checks that `uri` is a MongoDB connection string the driver splits as intended:
/// `mongodb://[user[:password]@]host[:port][,host[:port]...][/[db]][?options]`, or
/// `mongodb+srv://` with exactly one host and no port. The user-info must be percent-encoded
/// (the driver refuses `:/?#[]@` there), which also keeps the password out of every later part
/// and so out of the driver's error messages. The messages never quote the URI.
fn check_uri(uri: &str) -> Result<(), EditError> {
    let bad = |message| Err(EditError::Address(message));
    let Some((scheme, rest)) = uri.split_once("://") else {
        return bad("expected a mongodb:// or mongodb+srv:// URI");
    };
    let srv = match scheme {
        "mongodb" => false,
        "mongodb+srv" => true,
        _ => return bad("the URI must start with mongodb:// or mongodb+srv://"),
    };
    if !rest.bytes().all(is_uri_byte) {
        return bad(
            "the URI holds a space, a quote, a non-ASCII or another character that must be percent-encoded",
        );
    }
    let (before_options, options) = rest.split_once('?').unwrap_or((rest, ""));
    if options.contains('@') {
        return bad(
            "an `@` after the URI's `?`: percent-encode a `?` in the user or password as %3F",
        );
    }
    let (user_info, hosts_and_db) = match before_options.rsplit_once('@') {
        Some((user_info, rest)) => (Some(user_info), rest),
        None => (None, before_options),
    };
    if let Some(user_info) = user_info {
        let (user, password) = match user_info.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (user_info, None),
        };
        if user.is_empty() {
            return bad("the URI has an `@` but no user before it");
        }
        if !is_percent_encoded(user) {
            return bad(
                "the user in the URI must be percent-encoded (`:/?#[]@` and a `%` not followed by two hex digits)",
            );
        }
        if password.is_some_and(|p| !is_percent_encoded(p)) {
            return bad(
                "the password in the URI must be percent-encoded (`:/?#[]@` and a `%` not followed by two hex digits)",
            );
        }
    }
    let hosts = hosts_and_db
        .split_once('/')
        .map_or(hosts_and_db, |(h, _)| h);
    let mut count = 0;
    for host in hosts.split(',') {
        let has_port = check_host(host)?;
        if srv && has_port {
            return bad("a mongodb+srv:// URI takes a host name without a port");
        }
        count += 1;
    }
    if srv && count != 1 {
        return bad("a mongodb+srv:// URI takes exactly one host name");
    }
    Ok(())
}

/// Checks one `host[:port]`, `[ipv6][:port]` or percent-encoded `…/x.sock` of a URI's host
/// list, as the driver parses it; returns whether it has a port (a socket counts as one).
fn check_host(host: &str) -> Result<bool, EditError> {
    let bad = |message| Err(EditError::Address(message));
    if host.is_empty() {
        return bad("an empty host");
    }
    if host.ends_with(".sock") {
        return Ok(true);
    }
    let port = match host.strip_prefix('[') {
        Some(literal) => {
            let Some((ip, port)) = literal.split_once(']') else {
                return bad("an IPv6 address without its closing `]`");
            };
            if ip.parse::<Ipv6Addr>().is_err() {
                return bad("an invalid IPv6 address between `[` and `]`");
            }
            match port {
                "" => None,
                _ => match port.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return bad("something other than `:port` after an IPv6 address"),
                },
            }
        }
        None => {
            let (name, port) = match host.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            };
            let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            if name.is_empty() || !name.bytes().all(name_byte) {
                return bad("a host name must be letters, digits, `-`, `.` and `_`");
            }
            port
        }
    };
    match port {
        None => Ok(false),
        Some(port) => match port.parse::<u16>() {
            Ok(1..) => Ok(true),
            _ => bad("a port must be a number from 1 to 65535"),
        },
    }
}

/// RFC 3986 unreserved, reserved and `%`: everything a URI may hold as it is.
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// Whether user-info text holds none of the characters the driver refuses there, and every `%`
/// starts an escape.
fn is_percent_encoded(s: &str) -> bool {
    !s.contains([':', '/', '?', '#', '[', ']', '@'])
        && s.split('%')
            .skip(1)
            .all(|part| part.len() >= 2 && part.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))
}
