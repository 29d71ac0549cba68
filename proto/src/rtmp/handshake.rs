//! RTMP handshake state machines (server and client), sans-IO.
//!
//! Bytes read from the socket are appended by the caller to an input `BytesMut`; `read` consumes
//! exactly the handshake bytes it needs (C0+C1, then C2 on the server; S0+S1, then S2 on the
//! client) and appends its answers to an output `BytesMut`. Anything after the last handshake
//! packet stays in the input for the chunk layer. Randomness and the 4-byte epoch come from the
//! caller; nothing here reads a clock or an RNG.
//!
//! Two handshakes exist in the wild. The plain one (RTMP spec 5.2) echoes C1 as S2. The digest
//! ("complex") one used by Flash, librtmp, OBS and FFmpeg hides an HMAC-SHA256 digest inside C1 at
//! one of two offset schemes; a server that finds it answers with a digest of its own in S1 and an
//! S2 whose last 32 bytes prove it saw C1's digest. The server here tries the digest handshake
//! and falls back to the plain one when C1 carries no valid digest.

use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only RTMP version accepted in C0/S0 (6 would be RTMPE, which we do not speak).
pub const RTMP_VERSION: u8 = 3;
/// Random bytes the caller supplies to a handshake: C1/S1 random part plus C2/S2 random part.
pub const RANDOM_LEN: usize = 2 * HANDSHAKE_SIZE;

/// Length of an HMAC-SHA256 digest.
const DIGEST_LEN: usize = 32;
/// Length of the part of S2/C2 that the digest covers (everything but the digest itself).
const RESPONSE_RANDOM_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;

/// The 32 bytes appended to both Adobe keys in their "full" form.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
/// Key used by clients for the C1 digest (the first 30 bytes of the full player key).
const FP_KEY_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
/// Key used by servers for the S1 digest (the first 36 bytes of the full server key).
const FMS_KEY_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";

/// Version field a digest server puts in S1 (FMS 4.5 style; any non-zero value signals "digest").
const SERVER_DIGEST_VERSION: [u8; 4] = [0x04, 0x05, 0x00, 0x01];
/// Version field our digest client puts in C1 (a Flash Player 10-era value).
const CLIENT_DIGEST_VERSION: [u8; 4] = [0x0A, 0x00, 0x2D, 0x02];

/// Which of the two C1 layouts carries the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestScheme {
    /// Scheme 0: time, version, then the 764-byte digest block, then the key block.
    DigestFirst,
    /// Scheme 1: time, version, then the 764-byte key block, then the digest block.
    KeyFirst,
}

impl DigestScheme {
    /// Absolute offset of the 32-byte digest inside a 1536-byte packet for this scheme.
    ///
    /// The four bytes at the start of the digest block are summed, taken modulo 728 and added to
    /// the block's base (12 = 8 + 4 for scheme 0, 776 = 8 + 764 + 4 for scheme 1). The largest
    /// result is 776 + 727 = 1503, so the digest always fits (1503 + 32 = 1535 <= 1536).
    fn digest_offset(self, packet: &[u8; HANDSHAKE_SIZE]) -> usize {
        let block = match self {
            DigestScheme::DigestFirst => 8,
            DigestScheme::KeyFirst => 772,
        };
        let sum: usize = packet[block..block + 4]
            .iter()
            .map(|&b| usize::from(b))
            .sum();
        block + 4 + sum % 728
    }
}

/// Which handshake the server ended up doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeMode {
    /// Plain handshake: S2 echoes C1.
    Plain,
    /// Digest handshake: C1's digest was valid at this scheme; S1/S2 carry server digests.
    Digest(DigestScheme),
}

/// Errors from either handshake state machine.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// C0 or S0 named an RTMP version other than 3 (6 = RTMPE encryption, not supported).
    #[error("unsupported RTMP version {0} in C0/S0 (only version 3 is supported)")]
    UnsupportedVersion(u8),
}

/// HMAC-SHA256 of `parts` (concatenated) under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // Invariant: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Digest of a 1536-byte packet with the 32 digest bytes at `offset` left out.
fn packet_digest(packet: &[u8; HANDSHAKE_SIZE], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Looks for a valid digest made with `key` at either scheme; returns the scheme and the digest.
fn find_digest(
    packet: &[u8; HANDSHAKE_SIZE],
    key: &[u8],
) -> Option<(DigestScheme, [u8; DIGEST_LEN])> {
    [DigestScheme::DigestFirst, DigestScheme::KeyFirst]
        .into_iter()
        .find_map(|scheme| {
            let offset = scheme.digest_offset(packet);
            let expected = packet_digest(packet, offset, key);
            (packet[offset..offset + DIGEST_LEN] == expected).then_some((scheme, expected))
        })
}

/// Writes a digest made with `key` into `packet` at the offset of `scheme`.
fn sign_packet(packet: &mut [u8; HANDSHAKE_SIZE], scheme: DigestScheme, key: &[u8]) {
    let offset = scheme.digest_offset(packet);
    let digest = packet_digest(packet, offset, key);
    packet[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
}

/// Fills the random part of a response packet (S2/C2) and signs its last 32 bytes with
/// `HMAC(HMAC(full_key, peer_digest), random part)`.
fn signed_response(
    random: &[u8],
    full_key_text: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> [u8; HANDSHAKE_SIZE] {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    let len = random.len().min(RESPONSE_RANDOM_LEN);
    packet[..len].copy_from_slice(&random[..len]);
    let digest = response_digest(&packet, full_key_text, peer_digest);
    packet[RESPONSE_RANDOM_LEN..].copy_from_slice(&digest);
    packet
}

/// The expected last 32 bytes of a digest-mode S2/C2.
fn response_digest(
    packet: &[u8; HANDSHAKE_SIZE],
    full_key_text: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> [u8; DIGEST_LEN] {
    let key = hmac_sha256(&[full_key_text, &KEY_TAIL].concat(), &[peer_digest]);
    hmac_sha256(&key, &[&packet[..RESPONSE_RANDOM_LEN]])
}

/// Builds a C1/S1: epoch, version, random bytes.
fn first_packet(epoch: u32, version: [u8; 4], random: &[u8]) -> [u8; HANDSHAKE_SIZE] {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    packet[..4].copy_from_slice(&epoch.to_be_bytes());
    packet[4..8].copy_from_slice(&version);
    let len = random.len().min(HANDSHAKE_SIZE - 8);
    packet[8..8 + len].copy_from_slice(&random[..len]);
    packet
}

/// Takes a 1536-byte packet off the front of `input`, if complete.
fn take_packet(input: &mut BytesMut) -> Option<[u8; HANDSHAKE_SIZE]> {
    let bytes = input.get(..HANDSHAKE_SIZE)?;
    let mut packet = [0u8; HANDSHAKE_SIZE];
    packet.copy_from_slice(bytes);
    input.advance(HANDSHAKE_SIZE);
    Some(packet)
}

/// Checks the version byte (C0/S0) at the front of `input` without consuming it.
fn check_version(input: &BytesMut) -> Result<(), HandshakeError> {
    match input.first() {
        Some(&RTMP_VERSION) | None => Ok(()),
        Some(&other) => Err(HandshakeError::UnsupportedVersion(other)),
    }
}

/// Where the server handshake is.
#[derive(Debug)]
enum ServerState {
    /// Waiting for C0+C1; holds the caller's randomness until S1/S2 are built.
    AwaitC0C1 {
        epoch: u32,
        random: Box<[u8; RANDOM_LEN]>,
    },
    /// S0+S1+S2 sent; waiting for C2 (read and discarded: servers do not verify it).
    AwaitC2 { mode: HandshakeMode },
    /// C2 consumed; the chunk layer owns the rest of the input.
    Done { mode: HandshakeMode },
}

/// Server side of the handshake: reads C0+C1, writes S0+S1+S2, reads C2.
#[derive(Debug)]
pub struct ServerHandshake {
    /// Current step; only ever moves forward.
    state: ServerState,
}

impl ServerHandshake {
    /// A server handshake that will put `epoch` in S1 and take S1/S2 random bytes from `random`.
    pub fn new(epoch: u32, random: &[u8; RANDOM_LEN]) -> Self {
        ServerHandshake {
            state: ServerState::AwaitC0C1 {
                epoch,
                random: Box::new(*random),
            },
        }
    }

    /// Consumes handshake bytes from `input` and appends answers to `output`.
    ///
    /// Returns `Ok(Some(mode))` once C2 has been consumed (and on every later call);
    /// `Ok(None)` while more input is needed. Bytes after C2 are left in `input`.
    pub fn read(
        &mut self,
        input: &mut BytesMut,
        output: &mut BytesMut,
    ) -> Result<Option<HandshakeMode>, HandshakeError> {
        loop {
            match &self.state {
                ServerState::AwaitC0C1 { epoch, random } => {
                    check_version(input)?;
                    if input.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(None);
                    }
                    input.advance(1);
                    let Some(c1) = take_packet(input) else {
                        return Ok(None);
                    };
                    let mode = write_server_response(&c1, *epoch, random, output);
                    self.state = ServerState::AwaitC2 { mode };
                }
                ServerState::AwaitC2 { mode } => {
                    let mode = *mode;
                    if take_packet(input).is_none() {
                        return Ok(None);
                    }
                    self.state = ServerState::Done { mode };
                }
                ServerState::Done { mode } => return Ok(Some(*mode)),
            }
        }
    }

    /// Whether C2 has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done { .. })
    }
}

/// Writes S0+S1+S2 for `c1` and returns which handshake that was.
fn write_server_response(
    c1: &[u8; HANDSHAKE_SIZE],
    epoch: u32,
    random: &[u8; RANDOM_LEN],
    output: &mut BytesMut,
) -> HandshakeMode {
    let (s1_random, s2_random) = random.split_at(HANDSHAKE_SIZE);
    output.reserve(1 + 2 * HANDSHAKE_SIZE);
    output.put_u8(RTMP_VERSION);
    match find_digest(c1, FP_KEY_TEXT) {
        Some((scheme, c1_digest)) => {
            let mut s1 = first_packet(epoch, SERVER_DIGEST_VERSION, s1_random);
            sign_packet(&mut s1, scheme, FMS_KEY_TEXT);
            output.put_slice(&s1);
            output.put_slice(&signed_response(s2_random, FMS_KEY_TEXT, &c1_digest));
            HandshakeMode::Digest(scheme)
        }
        None => {
            output.put_slice(&first_packet(epoch, [0; 4], s1_random));
            output.put_slice(c1);
            HandshakeMode::Plain
        }
    }
}

/// What the client learned from the server's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHandshakeDone {
    /// S1 carried a valid server digest (only checked when we sent a digest C1).
    pub s1_digest_valid: bool,
    /// S2's last 32 bytes match `HMAC(HMAC(full FMS key, C1 digest), S2 random)`.
    pub s2_digest_valid: bool,
}

/// Where the client handshake is.
#[derive(Debug)]
enum ClientState {
    /// C0+C1 sent; waiting for S0+S1.
    AwaitS0S1 {
        c1_digest: Option<[u8; DIGEST_LEN]>,
        c2_random: Box<[u8; HANDSHAKE_SIZE]>,
    },
    /// C2 sent; waiting for S2.
    AwaitS2 {
        c1_digest: Option<[u8; DIGEST_LEN]>,
        s1_digest_valid: bool,
    },
    /// S2 consumed.
    Done(ClientHandshakeDone),
}

/// Client side of the handshake: writes C0+C1 at once, answers S1 with C2, reads S2.
#[derive(Debug)]
pub struct ClientHandshake {
    /// Current step; only ever moves forward.
    state: ClientState,
}

impl ClientHandshake {
    /// Starts a client handshake, appending C0+C1 to `output`.
    ///
    /// With `digest`, C1 carries a scheme-0 digest made with the Flash Player key (as librtmp and
    /// OBS do), and C2 answers S1's digest; otherwise the plain handshake is used.
    pub fn start(
        epoch: u32,
        random: &[u8; RANDOM_LEN],
        digest: bool,
        output: &mut BytesMut,
    ) -> Self {
        let (c1_random, c2_random) = random.split_at(HANDSHAKE_SIZE);
        let version = if digest {
            CLIENT_DIGEST_VERSION
        } else {
            [0; 4]
        };
        let mut c1 = first_packet(epoch, version, c1_random);
        let c1_digest = digest.then(|| {
            sign_packet(&mut c1, DigestScheme::DigestFirst, FP_KEY_TEXT);
            let offset = DigestScheme::DigestFirst.digest_offset(&c1);
            packet_digest(&c1, offset, FP_KEY_TEXT)
        });
        output.reserve(1 + HANDSHAKE_SIZE);
        output.put_u8(RTMP_VERSION);
        output.put_slice(&c1);
        let mut c2_random_packet = [0u8; HANDSHAKE_SIZE];
        c2_random_packet.copy_from_slice(c2_random);
        ClientHandshake {
            state: ClientState::AwaitS0S1 {
                c1_digest,
                c2_random: Box::new(c2_random_packet),
            },
        }
    }

    /// Consumes S0+S1 (then writes C2) and S2 from `input`.
    ///
    /// Returns `Ok(Some(..))` once S2 has been consumed (and on every later call); `Ok(None)`
    /// while more input is needed. Bytes after S2 are left in `input`.
    pub fn read(
        &mut self,
        input: &mut BytesMut,
        output: &mut BytesMut,
    ) -> Result<Option<ClientHandshakeDone>, HandshakeError> {
        loop {
            match &self.state {
                ClientState::AwaitS0S1 {
                    c1_digest,
                    c2_random,
                } => {
                    check_version(input)?;
                    if input.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(None);
                    }
                    input.advance(1);
                    let Some(s1) = take_packet(input) else {
                        return Ok(None);
                    };
                    let c1_digest = *c1_digest;
                    let s1_digest = c1_digest.and_then(|_| find_digest(&s1, FMS_KEY_TEXT));
                    match s1_digest {
                        Some((_, digest)) => {
                            output.put_slice(&signed_response(
                                &c2_random[..],
                                FP_KEY_TEXT,
                                &digest,
                            ));
                        }
                        // Plain servers (and digest servers that saw no digest) expect S1 echoed.
                        None => output.put_slice(&s1),
                    }
                    self.state = ClientState::AwaitS2 {
                        c1_digest,
                        s1_digest_valid: s1_digest.is_some(),
                    };
                }
                ClientState::AwaitS2 {
                    c1_digest,
                    s1_digest_valid,
                } => {
                    let Some(s2) = take_packet(input) else {
                        return Ok(None);
                    };
                    let s2_digest_valid = c1_digest.is_some_and(|digest| {
                        s2[RESPONSE_RANDOM_LEN..] == response_digest(&s2, FMS_KEY_TEXT, &digest)
                    });
                    self.state = ClientState::Done(ClientHandshakeDone {
                        s1_digest_valid: *s1_digest_valid,
                        s2_digest_valid,
                    });
                }
                ClientState::Done(done) => return Ok(Some(*done)),
            }
        }
    }

    /// Whether S2 has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes with a recognisable pattern (tests need determinism, not entropy).
    fn pattern(seed: u8) -> [u8; RANDOM_LEN] {
        let mut random = [0u8; RANDOM_LEN];
        for (i, byte) in random.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        random
    }

    /// Independent HMAC for fixtures, so the tests do not trust the code under test.
    fn mac(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        for d in data {
            mac.update(d);
        }
        mac.finalize().into_bytes().into()
    }

    /// A digest C1 built by hand from the spec, at scheme 0 (`key_first == false`) or 1.
    fn digest_c1_fixture(key_first: bool) -> [u8; HANDSHAKE_SIZE] {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[0..4].copy_from_slice(&[0, 0, 0x12, 0x34]); // time
        c1[4..8].copy_from_slice(&[0x80, 0x00, 0x07, 0x02]); // Flash Player version
        for (i, b) in c1[8..].iter_mut().enumerate() {
            *b = (i % 251) as u8; // "random"
        }
        // Offset bytes: the 4 bytes opening the digest block (at 8 or at 8 + 764).
        let block = if key_first { 772 } else { 8 };
        c1[block..block + 4].copy_from_slice(&[200, 150, 100, 50]);
        let sum = 200 + 150 + 100 + 50;
        let offset = block + 4 + sum % 728;
        let digest = mac(
            b"Genuine Adobe Flash Player 001",
            &[&c1[..offset], &c1[offset + 32..]],
        );
        c1[offset..offset + 32].copy_from_slice(&digest);
        c1
    }

    /// Feeds C0 + `c1` + a C2 + `tail` to a server; returns (mode, S0S1S2, leftover input).
    fn run_server(c1: &[u8; HANDSHAKE_SIZE], tail: &[u8]) -> (HandshakeMode, BytesMut, BytesMut) {
        let mut server = ServerHandshake::new(0x0102_0304, &pattern(7));
        let mut input = BytesMut::new();
        let mut output = BytesMut::new();
        input.put_u8(3);
        input.put_slice(c1);
        assert!(server.read(&mut input, &mut output).unwrap().is_none());
        assert_eq!(output.len(), 1 + 2 * HANDSHAKE_SIZE);
        input.put_slice(&[0x55; HANDSHAKE_SIZE]); // C2 (not verified)
        input.put_slice(tail);
        let mode = server.read(&mut input, &mut output).unwrap().unwrap();
        (mode, output, input)
    }

    #[test]
    fn digest_c1_fixture_gets_signed_s1_and_s2_at_both_schemes() {
        for (key_first, scheme) in [
            (false, DigestScheme::DigestFirst),
            (true, DigestScheme::KeyFirst),
        ] {
            let c1 = digest_c1_fixture(key_first);
            let (mode, output, leftover) = run_server(&c1, b"chunks");
            assert_eq!(mode, HandshakeMode::Digest(scheme));
            assert_eq!(&leftover[..], b"chunks");
            assert_eq!(output[0], 3); // S0
            let s1: [u8; HANDSHAKE_SIZE] = output[1..1 + HANDSHAKE_SIZE].try_into().unwrap();
            let s2: [u8; HANDSHAKE_SIZE] = output[1 + HANDSHAKE_SIZE..].try_into().unwrap();
            assert_eq!(&s1[0..4], &[1, 2, 3, 4]); // our epoch
            assert_ne!(&s1[4..8], &[0, 0, 0, 0]); // non-zero version: digest server
            // S1 digest at the same scheme, made with the 36-byte FMS key.
            let block = if key_first { 772 } else { 8 };
            let sum: usize = s1[block..block + 4].iter().map(|&b| b as usize).sum();
            let offset = block + 4 + sum % 728;
            let expected = mac(
                b"Genuine Adobe Flash Media Server 001",
                &[&s1[..offset], &s1[offset + 32..]],
            );
            assert_eq!(&s1[offset..offset + 32], &expected);
            // S2 digest: HMAC(HMAC(full FMS key, C1 digest), S2[..1504]).
            let c1_block = if key_first { 772 } else { 8 };
            let offset_sum = 200 + 150 + 100 + 50; // the offset bytes of the fixture
            let c1_offset = c1_block + 4 + offset_sum % 728;
            let full_key = [FMS_KEY_TEXT, &KEY_TAIL].concat();
            let key = mac(&full_key, &[&c1[c1_offset..c1_offset + 32]]);
            assert_eq!(&s2[1504..], &mac(&key, &[&s2[..1504]]));
        }
    }

    #[test]
    fn plain_c1_is_echoed_as_s2() {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[0..4].copy_from_slice(&[0, 0, 0, 9]); // time
        // version bytes zero: plain handshake; random:
        c1[8..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let (mode, output, leftover) = run_server(&c1, &[]);
        assert_eq!(mode, HandshakeMode::Plain);
        assert!(leftover.is_empty());
        assert_eq!(&output[1..5], &[1, 2, 3, 4]); // S1 time = our epoch
        assert_eq!(&output[5..9], &[0, 0, 0, 0]); // S1 zero field
        assert_eq!(&output[1 + HANDSHAKE_SIZE..], &c1[..]); // S2 = C1
    }

    #[test]
    fn broken_digest_falls_back_to_plain() {
        let mut c1 = digest_c1_fixture(false);
        c1[1000] ^= 1; // covered by the digest in both schemes
        let (mode, output, _) = run_server(&c1, &[]);
        assert_eq!(mode, HandshakeMode::Plain);
        assert_eq!(&output[1 + HANDSHAKE_SIZE..], &c1[..]);
    }

    #[test]
    fn wrong_version_is_an_error() {
        let mut server = ServerHandshake::new(0, &pattern(1));
        let mut input = BytesMut::from(&[6u8][..]);
        let err = server.read(&mut input, &mut BytesMut::new()).unwrap_err();
        assert!(matches!(err, HandshakeError::UnsupportedVersion(6)));
    }

    /// Runs client and server against each other, one byte at a time in both directions.
    fn pair(digest: bool) -> (HandshakeMode, ClientHandshakeDone) {
        let mut to_server = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut client = ClientHandshake::start(5, &pattern(2), digest, &mut to_server);
        let mut server = ServerHandshake::new(6, &pattern(3));
        let (mut server_in, mut client_in) = (BytesMut::new(), BytesMut::new());
        let (mut mode, mut done) = (None, None);
        for _ in 0..20_000 {
            if !to_server.is_empty() {
                server_in.put_u8(to_server.split_to(1)[0]);
            }
            if !to_client.is_empty() {
                client_in.put_u8(to_client.split_to(1)[0]);
            }
            mode = server.read(&mut server_in, &mut to_client).unwrap();
            done = client.read(&mut client_in, &mut to_server).unwrap();
            if mode.is_some() && done.is_some() {
                break;
            }
        }
        assert!(server_in.is_empty() && client_in.is_empty());
        (mode.unwrap(), done.unwrap())
    }

    #[test]
    fn digest_client_and_server_agree() {
        let (mode, done) = pair(true);
        assert_eq!(mode, HandshakeMode::Digest(DigestScheme::DigestFirst));
        assert!(done.s1_digest_valid);
        assert!(done.s2_digest_valid);
    }

    #[test]
    fn plain_client_and_server_agree() {
        let (mode, done) = pair(false);
        assert_eq!(mode, HandshakeMode::Plain);
        assert!(!done.s1_digest_valid);
        assert!(!done.s2_digest_valid);
    }
}
