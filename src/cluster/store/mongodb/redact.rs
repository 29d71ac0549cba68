//! Keeping credentials out of the MongoDB store's errors: the secrets a connection URI holds,
//! and a check of every driver error's text for them before it becomes a [`StoreError`] cause.
//!
//! [`StoreError`]: crate::cluster::store::StoreError

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::config::UriCredentials;

/// The strings of a URI that would give credentials away: its user-info (`user:password`), and
/// the password both as written and percent-decoded ([`UriCredentials`] splits it).
pub(super) fn uri_secrets(uri: &str) -> Vec<String> {
    let Some(c) = UriCredentials::of(uri) else {
        return Vec::new();
    };
    let mut secrets = vec![c.user_info.to_owned()];
    if let Some(password) = c.password {
        secrets.push(password.to_owned());
        secrets.push(
            percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    secrets.retain(|s| !s.is_empty());
    secrets.dedup();
    secrets
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
        let s = uri_secrets("mongodb://u:100%25%zz@h/");
        assert_eq!(
            s,
            ["u:100%25%zz", "100%25%zz", "100%%zz"],
            "bad escapes kept"
        );
        // Same split as the driver: the last `@` before the options ends the user-info.
        let s = uri_secrets("mongodb://u:a@b@host/db?x=@y");
        assert_eq!(s, ["u:a@b", "a@b"]);
        assert!(uri_secrets("mongodb://host:27017/").is_empty());
        assert_eq!(uri_secrets("mongodb://justuser@host/"), ["justuser"]);
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
