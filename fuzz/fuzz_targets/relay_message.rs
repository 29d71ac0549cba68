#![no_main]
//! Relay messages: decoding arbitrary bytes never panics, and whatever decodes re-encodes to
//! bytes that decode to the same message.
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::relay::Message;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = Message::decode(&mut buf) {
        let mut again = BytesMut::new();
        msg.encode(&mut again);
        // The property under test: whatever decodes re-encodes to bytes that decode to it.
        let decoded = Message::decode(&mut again).expect("re-encoded message decodes").expect("complete");
        assert_eq!(decoded, msg);
        assert!(again.is_empty());
    }
});
