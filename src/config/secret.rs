//! Values that must never reach a log: [`Secret`] for configured secrets, and the one place
//! that knows where a connection URI keeps its credentials ([`UriCredentials`], [`mask_uri`]),
//! used to print a masked store URI and to keep the MongoDB driver's errors free of them.

use std::fmt;

/// A string that must never reach a log: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The shortest secret streamfleet itself keys with (cluster secret, JWT and HMAC keys, webhook
/// signatures): anything shorter can be guessed offline.
pub const MIN_SECRET: usize = 16;

/// Passwords guessed first, and the placeholders our example files ship (`change-me`).
const GUESSED_FIRST: &[&str] = &[
    "admin", "password", "secret", "changeit", "default", "test", "123456", "12345678",
];

/// Why `value` is too weak to be a secret, if it is: a placeholder we ship or a password
/// guessed first, or shorter than `min_len` characters (0: no length rule). The reason never
/// quotes the value.
pub fn weakness(value: &str, min_len: usize) -> Option<String> {
    let folded: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    if folded.contains("changeme") || folded.contains("changethis") {
        return Some("still the placeholder from the example files".into());
    }
    if GUESSED_FIRST.contains(&value.to_ascii_lowercase().as_str()) {
        return Some("a password guessed first".into());
    }
    let length = value.chars().count();
    (length < min_len).then(|| format!("{length} characters; at least {min_len} are required"))
}

/// The credentials of a URI like `mongodb://user:password@host/db?options`, split the way the
/// MongoDB driver splits them: options start at the first `?`, the user-info ends at the last
/// `@` before them, and the password starts after the user-info's first `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriCredentials<'a> {
    /// Everything between `://` and the host: `user:password`.
    pub user_info: &'a str,
    /// The user, as written (percent-encoded).
    pub user: &'a str,
    /// The password, as written (percent-encoded), when there is one.
    pub password: Option<&'a str>,
    /// Byte offset of the user-info in the URI.
    offset: usize,
}

impl<'a> UriCredentials<'a> {
    /// The credentials of `uri`, if it has any.
    pub fn of(uri: &'a str) -> Option<Self> {
        let offset = uri.find("://").map_or(0, |i| i + 3);
        let rest = uri.get(offset..)?;
        let before_options = rest.split_once('?').map_or(rest, |(head, _)| head);
        let (user_info, _) = before_options.rsplit_once('@')?;
        let (user, password) = match user_info.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (user_info, None),
        };
        Some(UriCredentials {
            user_info,
            user,
            password,
            offset,
        })
    }
}

/// `uri` with its password replaced by `***` (`mongodb://user:***@host/...`); a URI without
/// credentials comes back as it is.
pub fn mask_uri(uri: &str) -> String {
    let Some(c) = UriCredentials::of(uri) else {
        return uri.to_owned();
    };
    let end = c.offset + c.user_info.len();
    let (head, tail) = (uri.get(..c.offset), uri.get(end..));
    match (head, tail, c.password) {
        (Some(head), Some(tail), Some(_)) => format!("{head}{}:***{tail}", c.user),
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_split_like_the_driver() {
        let c = UriCredentials::of("mongodb://admin:p%40ss%3Aw@db1:27017,db2/?authSource=admin")
            .unwrap();
        assert_eq!(
            (c.user_info, c.user, c.password),
            ("admin:p%40ss%3Aw", "admin", Some("p%40ss%3Aw"))
        );
        // The last `@` before the options ends the user-info.
        let c = UriCredentials::of("mongodb://u:a@b@host/db?x=@y").unwrap();
        assert_eq!((c.user, c.password), ("u", Some("a@b")));
        assert_eq!(UriCredentials::of("mongodb://host:27017/?x=@y"), None);
        let c = UriCredentials::of("mongodb://justuser@host/").unwrap();
        assert_eq!((c.user, c.password), ("justuser", None));
    }

    #[test]
    fn weak_secrets_are_named_without_quoting_them() {
        assert!(weakness("change-me", 0).unwrap().contains("placeholder"));
        assert!(
            weakness("CHANGE_ME_please_0123456789", 16)
                .unwrap()
                .contains("placeholder")
        );
        assert!(weakness("admin", 0).unwrap().contains("guessed"));
        let short = weakness("s3cret", 16).unwrap();
        assert!(short.contains("6 characters") && !short.contains("s3cret"));
        assert_eq!(weakness("a-random-cluster-secret", 16), None);
        assert_eq!(
            weakness("s3cret", 0),
            None,
            "no length rule for passwords we do not set"
        );
    }

    #[test]
    fn masks_the_whole_password() {
        assert_eq!(
            mask_uri("mongodb://u:secret@h:27017/?authSource=admin"),
            "mongodb://u:***@h:27017/?authSource=admin"
        );
        assert_eq!(
            mask_uri("mongodb://u:a@b@host/db"),
            "mongodb://u:***@host/db",
            "a password with an @ is masked whole"
        );
        assert_eq!(mask_uri("mongodb://h:27017/"), "mongodb://h:27017/");
        assert_eq!(mask_uri("mongodb://justuser@h/"), "mongodb://justuser@h/");
    }
}
