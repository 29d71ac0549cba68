//! Keeping credentials out of the MongoDB store's errors: the secrets a connection URI holds,
//! and a check of every driver error's text for them before it becomes a [`StoreError`] cause.
//!
//! [`StoreError`]: crate::cluster::store::StoreError

use std::fmt;

/// The strings of a URI that would give credentials away: its user-info (`user:password`), and
/// the password both as written and percent-decoded. Splits the way the driver does: options
/// after the first `?`, user-info before the last `@`, password after the first `:`.
pub(super) fn uri_secrets(uri: &str) -> Vec<String> {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let before_options = after_scheme
        .split_once('?')
        .map_or(after_scheme, |(head, _)| head);
    let Some((user_info, _)) = before_options.rsplit_once('@') else {
        return Vec::new();
    };
    let mut secrets = vec![user_info.to_owned()];
    if let Some((_, password)) = user_info.split_once(':') {
        secrets.push(password.to_owned());
        secrets.push(percent_decode(password));
    }
    secrets.retain(|s| !s.is_empty());
    secrets.dedup();
    secrets
}

/// Decodes `%XX` escapes (invalid ones are kept as written; invalid UTF-8 becomes U+FFFD).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(decoded) if b == b'%' => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A driver error whose text contained a credential, kept as text with the credential masked.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// Keeps a driver error as the cause unless its text (`Display` and `Debug`, through its whole
/// source chain) contains a secret; then only a masked copy of its message survives. The
/// driver is careful with credentials, so the masked copy is a safety net, not the usual path.
pub(super) fn redact(
    e: ::mongodb::error::Error,
    secrets: &[String],
) -> Box<dyn std::error::Error + Send + Sync> {
    let mut texts = vec![format!("{e:?}")];
    let mut level: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = level {
        texts.push(err.to_string());
        level = err.source();
    }
    if !secrets
        .iter()
        .any(|s| texts.iter().any(|t| t.contains(s.as_str())))
    {
        return Box::new(e);
    }
    // Longest first, so the user-info is masked whole before the password inside it.
    let mut by_length: Vec<&String> = secrets.iter().collect();
    by_length.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut message = e.to_string();
    for secret in by_length {
        message = message.replace(secret.as_str(), "***");
    }
    Box::new(Redacted(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_secrets_cover_user_info_and_both_password_spellings() {
        let s = uri_secrets("mongodb://admin:p%40ss%3Aw@db1:27017,db2/?authSource=admin");
        assert_eq!(s, ["admin:p%40ss%3Aw", "p%40ss%3Aw", "p@ss:w"]);
        // Same split as the driver: the last `@` before the options ends the user-info.
        let s = uri_secrets("mongodb://u:a@b@host/db?x=@y");
        assert_eq!(s, ["u:a@b", "a@b"]);
        assert!(uri_secrets("mongodb://host:27017/").is_empty());
        assert_eq!(uri_secrets("mongodb://justuser@host/"), ["justuser"]);
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%20b%2F"), "a b/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn redaction_masks_secrets_found_anywhere_in_the_error() {
        let secrets = uri_secrets("mongodb://root:hunter2@h/");
        let leaky =
            ::mongodb::error::Error::custom("bad login root:hunter2 for hunter2".to_owned());
        let out = redact(leaky, &secrets);
        let text = format!("{out} {out:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");

        let clean = ::mongodb::error::Error::custom("connection refused".to_owned());
        let out = redact(clean, &secrets);
        assert!(
            out.downcast_ref::<::mongodb::error::Error>().is_some(),
            "clean errors keep their type"
        );
    }
}
