//! Who may reach a media node's REST API, web console and `/metrics` (`rest:` of the node, Ant
//! Media's `remoteAllowedCIDR` plus its JWT server control), and the CORS answer of the JSON
//! APIs.
//!
//! The client is the TCP peer, or, when the peer is one of `trusted_proxies`, the address its
//! `X-Forwarded-For` names (walking the list from the right while each hop is trusted, so a
//! client cannot pick its own address by sending the header). A request forwarded by a proxy
//! that is not trusted is refused rather than taken as the proxy's own: otherwise everyone behind
//! an LB on an allowed address would be allowed. A JWT signed with `rest.jwt_secret` in
//! `Authorization` (`Bearer <jwt>` or the bare token, as Ant Media's clients send it) opens the
//! REST from anywhere.

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};
use ipnet::IpNet;

use super::super::access;
use crate::config::RestConfig;

/// Why a request may not have the REST; the text goes to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Neither an allowed address nor a token (403).
    Address(String),
    /// A token that does not check out (401).
    Token(access::Refusal),
}

/// Whether this request may use the REST API, the console and `/metrics`.
pub fn rest_access(rest: &RestConfig, peer: IpAddr, headers: &HeaderMap) -> Result<(), Denied> {
    if let (Some(secret), Some(token)) = (&rest.jwt, bearer(headers)) {
        return access::rest_token_valid(secret.expose(), token).map_err(Denied::Token);
    }
    let client = client_address(&rest.trusted_proxies, peer, headers).map_err(Denied::Address)?;
    if rest.allowed.iter().any(|n| n.contains(&client)) {
        return Ok(());
    }
    let token_hint = if rest.jwt.is_some() {
        "or send a JWT signed with rest.jwt_secret in Authorization"
    } else {
        "(this node has no rest.jwt_secret for tokens)"
    };
    Err(Denied::Address(format!(
        "the REST API answers addresses in rest.remote_allowed_cidrs, {client} is not one; add \
         it there {token_hint}"
    )))
}

/// The client's address: the peer, or what trusted proxies say in `X-Forwarded-For`.
pub fn client_address(
    trusted: &[IpNet],
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, String> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer.to_canonical();
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return Err("X-Forwarded-For is not text".into());
        };
        hops.extend(text.split(',').map(str::trim).filter(|h| !h.is_empty()));
    }
    if hops.is_empty() {
        return Ok(peer);
    }
    if !is_trusted(&peer) {
        return Err(format!(
            "forwarded by {peer}, which is not in rest.trusted_proxies"
        ));
    }
    let mut client = peer;
    while is_trusted(&client) {
        let Some(hop) = hops.pop() else { break };
        client = hop
            .parse::<IpAddr>()
            .map_err(|_| "X-Forwarded-For holds something that is not an address".to_owned())?
            .to_canonical();
    }
    Ok(client)
}

/// The token of `Authorization: Bearer <jwt>` or `Authorization: <jwt>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    streamfleet_proto::http::auth::bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The `Access-Control-Allow-Origin` value for a JSON API request: its `Origin` when that is
/// one of `rest.cors_origins`, else none.
pub fn cors_origin(rest: &RestConfig, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?.to_ascii_lowercase();
    rest.cors_origins.contains(&text).then(|| origin.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_by_default_and_forwarded_clients_by_trusted_proxies_only() {
        let rest = RestConfig::default();
        assert_eq!(rest_access(&rest, ip("127.0.0.1"), &headers(&[])), Ok(()));
        assert_eq!(
            rest_access(&rest, ip("::ffff:127.0.0.1"), &headers(&[])),
            Ok(())
        );
        assert!(matches!(
            rest_access(&rest, ip("192.0.2.9"), &headers(&[])),
            Err(Denied::Address(why)) if why.contains("192.0.2.9 is not one")
        ));
        // Through an LB on loopback: the LB appends the client; a forged left part is ignored.
        let via_lb = headers(&[
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert!(rest_access(&rest, ip("127.0.0.1"), &via_lb).is_err());
        assert_eq!(
            client_address(&rest.trusted_proxies, ip("127.0.0.1"), &via_lb),
            Ok(ip("203.0.113.5"))
        );
        let local_via_lb = headers(&[("x-forwarded-for", "127.0.0.1")]);
        assert_eq!(rest_access(&rest, ip("127.0.0.1"), &local_via_lb), Ok(()));
        // A proxy that is not trusted: refused, whatever it forwards.
        let mut open = RestConfig::default();
        open.allowed.push("10.0.0.0/8".parse().unwrap());
        assert!(matches!(
            rest_access(&open, ip("10.0.0.4"), &local_via_lb),
            Err(Denied::Address(why)) if why.contains("not in rest.trusted_proxies")
        ));
        assert_eq!(rest_access(&open, ip("10.0.0.4"), &headers(&[])), Ok(()));
        // Several trusted hops.
        let mut chain = RestConfig::default();
        chain.trusted_proxies.push("10.0.0.0/8".parse().unwrap());
        let hops = headers(&[("x-forwarded-for", "198.51.100.1, 10.0.0.9")]);
        assert_eq!(
            client_address(&chain.trusted_proxies, ip("10.0.0.4"), &hops),
            Ok(ip("198.51.100.1"))
        );
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert!(client_address(&chain.trusted_proxies, ip("10.0.0.4"), &junk).is_err());
    }

    #[test]
    fn a_rest_jwt_opens_it_from_anywhere_and_a_bad_one_is_named() {
        let key = "rest-key-0123456789";
        let rest = RestConfig {
            jwt: Some(Secret::new(key)),
            ..RestConfig::default()
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "ops"}),
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap();
        for auth in [format!("Bearer {token}"), token.clone()] {
            let h = headers(&[("authorization", &auth)]);
            assert_eq!(rest_access(&rest, ip("192.0.2.9"), &h), Ok(()));
        }
        let h = headers(&[("authorization", &format!("Bearer {token}x"))]);
        assert_eq!(
            rest_access(&rest, ip("192.0.2.9"), &h),
            Err(Denied::Token(access::Refusal::BadSignature))
        );
        // Without a configured key, a token opens nothing.
        let h = headers(&[("authorization", &token)]);
        assert!(rest_access(&RestConfig::default(), ip("192.0.2.9"), &h).is_err());
    }

    #[test]
    fn cors_only_for_configured_origins() {
        let rest = RestConfig {
            cors_origins: vec!["https://console.example.com".into()],
            ..RestConfig::default()
        };
        let h = headers(&[("origin", "https://Console.example.com")]);
        assert!(cors_origin(&rest, &h).is_some());
        let h = headers(&[("origin", "https://evil.example")]);
        assert_eq!(cors_origin(&rest, &h), None);
        assert_eq!(cors_origin(&rest, &headers(&[])), None);
    }
}
