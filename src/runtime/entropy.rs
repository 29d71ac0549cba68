//! Randomness and clock readings for the sans-IO protocol code, which takes them as inputs.

use streamfleet_proto::rtmp::handshake::RANDOM_LEN;

/// The wall clock, since the unix epoch (zero if the clock is before it).
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// What an RTMP handshake (either side) is seeded with: its random filler and its time field
/// (milliseconds, wrapping). The filler only has to look random: if the OS has no randomness,
/// zeros are still a valid handshake.
pub fn rtmp_handshake_seed() -> ([u8; RANDOM_LEN], u32) {
    let mut random = [0u8; RANDOM_LEN];
    if let Err(e) = getrandom::fill(&mut random) {
        tracing::debug!(error = %e, "no OS randomness for an RTMP handshake; zeros used");
    }
    let epoch = unix_time().as_millis() as u32;
    (random, epoch)
}
