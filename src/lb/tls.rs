//! TLS termination for `mode: http` frontends (rustls with the aws-lc-rs provider).
//!
//! Data flow at start: each PEM file of `tls.certs` (full chain, then the private key) ->
//! parsed with `rustls-pki-types` -> a [`CertifiedKey`] whose key is checked against the
//! leaf certificate -> the SNI table ([`SniResolver`]); the first file is the default for
//! clients that send no (or an unknown) server name. A missing, unreadable or mismatched file
//! stops startup with an error naming it; with `self_signed: true` a missing file is created
//! first (a development certificate for localhost, 127.0.0.1 and ::1). Per connection: the
//! handshake runs inside the connection task under `timeouts.client`, and ALPN says whether
//! the client speaks `h2` or `http/1.1`.
//!
//! Renewal (certbot every 60-90 days): on SIGHUP each frontend re-reads its files
//! ([`CertReloader::reload`]); new handshakes get the new certificates, connections already
//! open keep theirs, and a file that does not load keeps the old table with one error line.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite as suites};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::error::LbStartError;
use crate::config::TlsConfig;

/// The names a self-signed development certificate covers.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The crypto provider with Mozilla's "intermediate" cipher choice. rustls only implements
/// AEAD suites with forward secrecy, which is that list minus the DHE-RSA suites (rustls has
/// no finite-field DHE); the order is Mozilla's.
pub fn intermediate_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
            suites::TLS13_CHACHA20_POLY1305_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..provider::default_provider()
    }
}

/// Builds the acceptor of one frontend: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`; the
/// reloader re-reads its certificate files.
pub fn acceptor(
    node: &str,
    config: &TlsConfig,
) -> Result<(TlsAcceptor, Arc<CertReloader>), LbStartError> {
    let provider = Arc::new(intermediate_provider());
    for file in &config.certs {
        if config.self_signed && !file.exists() {
            write_self_signed(node, file)?;
        }
    }
    let reloader = Arc::new(CertReloader {
        node: node.to_owned(),
        files: config.certs.clone(),
        current: ArcSwap::from_pointee(load_all(node, &config.certs, &provider)?),
        provider: provider.clone(),
    });
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| LbStartError::CertInvalid {
            node: node.into(),
            file: Default::default(),
            what: "TLS versions refused by the crypto provider",
            source: Some(e.into()),
        })?
        .with_no_client_auth()
        .with_cert_resolver(reloader.clone());
    let mut server = server;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The suite is chosen by the list above, not by the client's order (HAProxy's default,
    // without `prefer-client-ciphers`): OpenSSL clients list TLS_AES_256_GCM_SHA384 first,
    // whose SHA-384 has no hardware help where SHA-256 has (SHA-NI), and AES-256 takes 40 %
    // more rounds than AES-128. Every suite offered is one of Mozilla's intermediate list.
    server.ignore_client_order = true;
    Ok((TlsAcceptor::from(Arc::new(server)), reloader))
}

/// Every file of a frontend, as an SNI table.
fn load_all(
    node: &str,
    files: &[PathBuf],
    provider: &CryptoProvider,
) -> Result<SniResolver, LbStartError> {
    let certs = files
        .iter()
        .map(|f| load_pem(node, f, provider))
        .collect::<Result<Vec<_>, _>>()?;
    SniResolver::new(certs).ok_or_else(|| LbStartError::CertInvalid {
        node: node.into(),
        file: Default::default(),
        what: "no certificate configured",
        source: None,
    })
}

/// A frontend's certificates, swapped whole when its files are re-read.
#[derive(Debug)]
pub struct CertReloader {
    node: String,
    files: Vec<PathBuf>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<SniResolver>,
}

impl CertReloader {
    /// Re-reads every file; on success new handshakes use them, on failure nothing changes.
    pub fn reload(&self) -> Result<(), LbStartError> {
        let table = load_all(&self.node, &self.files, &self.provider)?;
        self.current.store(Arc::new(table));
        Ok(())
    }

    /// [`CertReloader::reload`] with one log line saying how it went.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => {
                tracing::info!(node = %self.node, files = self.files.len(), "TLS certificates re-read")
            }
            Err(e) => {
                tracing::error!(node = %self.node, error = %e, "TLS certificates not re-read; the current ones stay in use")
            }
        }
    }

    /// Re-reads the files at every SIGHUP until the node stops.
    pub async fn on_sighup(self: Arc<Self>, shutdown: crate::runtime::Shutdown) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "no SIGHUP handler: certificates will not be re-read");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => match got {
                    Some(()) => self.reload_logged(),
                    None => return,
                },
                () = shutdown.stopped() => return,
            }
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().lookup(hello.server_name()))
    }
}

/// Reads a PEM file holding a chain then a key, and checks that they belong together.
fn load_pem(
    node: &str,
    file: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, LbStartError> {
    let invalid = |what: &'static str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
        LbStartError::CertInvalid {
            node: node.into(),
            file: file.to_owned(),
            what,
            source,
        }
    };
    let bytes = std::fs::read(file).map_err(|source| LbStartError::CertRead {
        node: node.into(),
        file: file.to_owned(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("unreadable certificate", Some(e.into())))?;
    if chain.is_empty() {
        return Err(invalid(
            "no CERTIFICATE block (expected the full chain, then the private key)",
            None,
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| invalid("no usable private key", Some(e.into())))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            invalid("the private key does not match the certificate", None)
        }
        e => invalid("certificate and key refused", Some(e.into())),
    })?;
    // `from_der` tolerates keys whose consistency it cannot check; a mismatch is an error here.
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(invalid(
            "the private key does not match the certificate",
            None,
        ));
    }
    Ok(Arc::new(certified))
}

/// Generates a development certificate for [`SELF_SIGNED_NAMES`] and writes it to `file`
/// (certificate then key, mode 0600).
fn write_self_signed(node: &str, file: &Path) -> Result<(), LbStartError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| LbStartError::SelfSigned {
        node: node.into(),
        file: file.to_owned(),
        source,
    };
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| fail(e.into()))?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.into()))?;
    }
    let pem = format!(
        "{}{}",
        generated.cert.pem(),
        generated.signing_key.serialize_pem()
    );
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| fail(e.into()))?;
    out.write_all(pem.as_bytes()).map_err(|e| fail(e.into()))?;
    tracing::warn!(%node, file = %file.display(), names = ?SELF_SIGNED_NAMES, "created a self-signed development certificate; browsers will not trust it");
    Ok(())
}

/// Chooses a certificate by SNI: exact DNS names first, then `*.` wildcards one label deep,
/// else the first configured certificate.
#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    /// The table for `certs` (first = default); `None` when there is none.
    pub fn new(certs: Vec<Arc<CertifiedKey>>) -> Option<SniResolver> {
        let default = certs.first()?.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            let Some(leaf) = cert.cert.first() else {
                continue;
            };
            let Ok(parsed) = webpki::EndEntityCert::try_from(leaf) else {
                continue;
            };
            for name in parsed.valid_dns_names() {
                let name = name.to_ascii_lowercase();
                // The first file naming a host wins, as with HAProxy's crt list order.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard
                        .entry(parent.to_owned())
                        .or_insert_with(|| cert.clone()),
                    None => exact.entry(name).or_insert_with(|| cert.clone()),
                };
            }
        }
        Some(SniResolver {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for a server name (already lowercase, as rustls gives it).
    pub fn lookup(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        if let Some(c) = self.exact.get(name) {
            return c.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_for(names: &[&str]) -> (Vec<u8>, Arc<CertifiedKey>) {
        let g = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let pem = format!("{}{}", g.cert.pem(), g.signing_key.serialize_pem()).into_bytes();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.pem");
        std::fs::write(&file, &pem).unwrap();
        let key = load_pem("lb", &file, &intermediate_provider()).unwrap();
        (pem, key)
    }

    #[test]
    fn sni_exact_wildcard_and_default() {
        let (_, a) = pem_for(&["a.example"]);
        let (_, b) = pem_for(&["b.example", "*.wild.example"]);
        let r = SniResolver::new(vec![a.clone(), b.clone()]).unwrap();
        assert!(Arc::ptr_eq(&r.lookup(Some("b.example")), &b));
        assert!(Arc::ptr_eq(&r.lookup(Some("x.wild.example")), &b));
        assert!(
            Arc::ptr_eq(&r.lookup(Some("y.x.wild.example")), &a),
            "wildcards cover one label"
        );
        assert!(Arc::ptr_eq(&r.lookup(Some("other.example")), &a));
        assert!(Arc::ptr_eq(&r.lookup(None), &a));
    }

    #[test]
    fn missing_mismatched_and_keyless_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = intermediate_provider();
        let missing = dir.path().join("missing.pem");
        let e = load_pem("lb", &missing, &p).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let one = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        let mismatched = dir.path().join("mismatched.pem");
        std::fs::write(
            &mismatched,
            format!("{}{}", one.cert.pem(), two.signing_key.serialize_pem()),
        )
        .unwrap();
        let e = load_pem("lb", &mismatched, &p).unwrap_err();
        assert!(
            e.to_string().contains("mismatched.pem") && e.to_string().contains("does not match"),
            "{e}"
        );

        let keyless = dir.path().join("keyless.pem");
        std::fs::write(&keyless, one.cert.pem()).unwrap();
        let e = load_pem("lb", &keyless, &p).unwrap_err();
        assert!(
            e.to_string().contains("keyless.pem") && e.to_string().contains("private key"),
            "{e}"
        );
    }

    #[test]
    fn self_signed_is_written_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certs/dev.pem");
        let config = TlsConfig {
            certs: vec![file.clone()],
            self_signed: true,
        };
        acceptor("lb", &config).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = std::fs::read(&file).unwrap();
        acceptor("lb", &config).unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            first,
            "an existing file is reused"
        );
        let text = String::from_utf8(first).unwrap();
        assert!(
            text.find("BEGIN CERTIFICATE").unwrap() < text.find("PRIVATE KEY").unwrap(),
            "chain then key"
        );
    }
}
