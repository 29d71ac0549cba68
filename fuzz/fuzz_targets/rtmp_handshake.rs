//! Arbitrary bytes into the server and client handshakes, fed in pieces: never a panic, and
//! whatever follows the last handshake packet is left for the chunk layer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::rtmp::handshake::{
    ClientHandshake, HANDSHAKE_SIZE, RANDOM_LEN, ServerHandshake,
};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1) * 16;
    let mut server = ServerHandshake::new(1, &[0x42; RANDOM_LEN]);
    let mut client = ClientHandshake::start(2, &[0x24; RANDOM_LEN], step % 32 == 0, &mut BytesMut::new());
    let (mut server_in, mut client_in) = (BytesMut::new(), BytesMut::new());
    let mut out = BytesMut::new();
    let (mut server_ok, mut client_ok) = (true, true);
    for piece in data.chunks(step) {
        server_in.extend_from_slice(piece);
        client_in.extend_from_slice(piece);
        if server_ok {
            match server.read(&mut server_in, &mut out) {
                Ok(Some(_)) => assert!(server_in.len() <= data.len()),
                Ok(None) => {}
                Err(_) => server_ok = false,
            }
        }
        if client_ok {
            client_ok = client.read(&mut client_in, &mut out).is_ok();
        }
    }
    if server_ok && data.len() >= 1 + 2 * HANDSHAKE_SIZE {
        assert!(server.is_done());
        assert_eq!(server_in.len(), data.len() - 1 - 2 * HANDSHAKE_SIZE);
    }
});
