//! Which session a STUN binding request is for, read from its `USERNAME` attribute
//! (`<our ufrag>:<their ufrag>`, RFC 8445 7.2.2) without parsing the rest of the message: the
//! UDP task calls it for every datagram from an address it does not know yet, so garbage costs a
//! few byte compares.

/// STUN's magic cookie (RFC 5389 6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// `USERNAME` attribute type.
const USERNAME: u16 = 0x0006;
/// The fixed header: type, length, cookie, transaction id.
const HEADER: usize = 20;
/// RFC 5389 15.3: USERNAME is at most 513 bytes.
const MAX_USERNAME: usize = 513;

/// The local ufrag a STUN message is addressed to, if `datagram` is a STUN message with a
/// `USERNAME` attribute of the form `local:remote`.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    // First two bits zero (RFC 7983 demultiplexing: 0..=3 is STUN), then the cookie.
    let header = datagram.get(..HEADER)?;
    if header[0] > 3 || header[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attrs = datagram.get(HEADER..HEADER + length)?;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + len)?;
        if kind == USERNAME {
            if len > MAX_USERNAME {
                return None;
            }
            let username = std::str::from_utf8(value).ok()?;
            return username.split_once(':').map(|(local, _)| local);
        }
        // Attributes are padded to 4 bytes.
        let padded = (4 + len).div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with USERNAME `srv1:cli2` and a PRIORITY attribute before it.
    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // PRIORITY (0x0024), 4 bytes.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x1e, 0xff]);
        // USERNAME, padded to 4 bytes.
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01]; // Binding request
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]); // transaction id
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn reads_the_local_ufrag() {
        assert_eq!(local_ufrag(&binding_request(b"srv1:cli2")), Some("srv1"));
    }

    #[test]
    fn ignores_what_is_not_stun_with_a_username() {
        assert_eq!(local_ufrag(&[]), None);
        assert_eq!(local_ufrag(&[0x80; 40]), None, "RTP");
        assert_eq!(local_ufrag(&[22; 40]), None, "DTLS");
        assert_eq!(local_ufrag(&binding_request(b"nocolon")), None);
        let mut truncated = binding_request(b"srv1:cli2");
        truncated.truncate(30);
        assert_eq!(local_ufrag(&truncated), None);
        let mut no_cookie = binding_request(b"srv1:cli2");
        no_cookie[4] = 0;
        assert_eq!(local_ufrag(&no_cookie), None);
    }
}
