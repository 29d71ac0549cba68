//! AMF0 values (Adobe Action Message Format 0): the encoding of RTMP commands and metadata.
//!
//! AMF0 is always decoded from a whole, already reassembled message body, so running out of
//! bytes is an error ([`Amf0Error::Truncated`]), not "incomplete". Decoding is bounded: nesting
//! depth, the number of values in one body and the length of long strings all have limits, and
//! nothing is allocated from a declared count before the bytes backing it have been read.
//! Encoding writes into any `BufMut`.

use bytes::{Buf, BufMut};

/// AMF0 type markers.
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const AVMPLUS: u8 = 0x11;
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// IEEE-754 double.
    Number(f64),
    /// `true` / `false`.
    Boolean(bool),
    /// UTF-8 string; encoded as a long string when longer than 65535 bytes.
    String(String),
    /// Anonymous object: properties in wire order.
    Object(Vec<(String, Amf0Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// Associative array (FLV `onMetaData` uses it): properties in wire order.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Dense array.
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch plus a (deprecated, usually 0) time zone.
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Time-zone offset in minutes, as sent.
        timezone: i16,
    },
    /// UTF-8 string sent with a 32-bit length.
    LongString(String),
}

/// Bounds on what a decoded AMF0 body may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amf0Limits {
    /// Deepest nesting of objects/arrays (the top-level value is depth 1).
    pub max_depth: usize,
    /// Most values (including keys' values and nested ones) in one decode call.
    pub max_values: usize,
    /// Longest long string, in bytes.
    pub max_long_string: usize,
}

impl Default for Amf0Limits {
    fn default() -> Self {
        Amf0Limits {
            max_depth: 32,
            // onMetaData has a few dozen entries; commands fewer. 8192 values fit in about
            // 400 KiB of `Amf0Value`s.
            max_values: 8192,
            max_long_string: 1024 * 1024,
        }
    }
}

/// Errors decoding AMF0.
#[derive(Debug, thiserror::Error)]
pub enum Amf0Error {
    /// The body ended in the middle of a value.
    #[error("AMF0 data truncated")]
    Truncated,
    /// A type marker we do not decode (movieclip, reference, recordset, XML, typed object,
    /// unsupported) or an object-end marker where a value belongs.
    #[error("unsupported AMF0 type marker 0x{0:02x}")]
    UnsupportedMarker(u8),
    /// The AMF3 switch marker (0x11): the value is AMF3, which we do not decode.
    #[error("AMF3 value (avmplus marker) inside AMF0 data is not supported")]
    Amf3Switch,
    /// Objects/arrays nested deeper than the limit.
    #[error("AMF0 nesting deeper than {0}")]
    TooDeep(usize),
    /// More values than the limit in one body.
    #[error("more than {0} AMF0 values")]
    TooManyValues(usize),
    /// A long string longer than the limit.
    #[error("AMF0 long string of {length} bytes exceeds the limit of {limit}")]
    StringTooLong {
        /// Declared length.
        length: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A string was not valid UTF-8.
    #[error("AMF0 string is not valid UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
}

/// Decodes AMF0 values under a set of limits, counting values across calls.
#[derive(Debug)]
pub struct Amf0Decoder<'a> {
    /// Bytes not yet decoded.
    input: &'a [u8],
    /// Limits for this body.
    limits: Amf0Limits,
    /// Values decoded so far (for `max_values`).
    values: usize,
}

impl<'a> Amf0Decoder<'a> {
    /// A decoder over a whole message body.
    pub fn new(input: &'a [u8], limits: Amf0Limits) -> Self {
        Amf0Decoder {
            input,
            limits,
            values: 0,
        }
    }

    /// Whether all input has been decoded.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// The bytes not decoded yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.input
    }

    /// Decodes the next value.
    pub fn decode(&mut self) -> Result<Amf0Value, Amf0Error> {
        self.value(1)
    }

    /// Decodes values until the input is used up.
    pub fn decode_all(mut self) -> Result<Vec<Amf0Value>, Amf0Error> {
        let mut values = Vec::new();
        while !self.is_empty() {
            values.push(self.decode()?);
        }
        Ok(values)
    }

    /// Counts one value against the limit.
    fn count(&mut self) -> Result<(), Amf0Error> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(Amf0Error::TooManyValues(self.limits.max_values));
        }
        Ok(())
    }

    /// Takes `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        if self.input.len() < n {
            return Err(Amf0Error::Truncated);
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let mut b = self.take(2)?;
        Ok(b.get_u16())
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let mut b = self.take(4)?;
        Ok(b.get_u32())
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let mut b = self.take(8)?;
        Ok(b.get_f64())
    }

    /// A string of `len` bytes.
    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(Amf0Error::InvalidUtf8)
    }

    /// A string with a 16-bit length (also used for property names).
    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()?;
        self.utf8(usize::from(len))
    }

    /// Decodes one value at nesting `depth`.
    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        if depth > self.limits.max_depth {
            return Err(Amf0Error::TooDeep(self.limits.max_depth));
        }
        self.count()?;
        let marker = self.u8()?;
        Ok(match marker {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            marker::STRING => Amf0Value::String(self.short_string()?),
            marker::OBJECT => Amf0Value::Object(self.properties(depth)?),
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::ECMA_ARRAY => {
                // The count is only a hint (FFmpeg writes 0 sometimes); the end marker decides.
                self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            marker::STRICT_ARRAY => {
                let count = self.u32()? as usize;
                // Every element takes at least one byte: a count beyond the input is truncated.
                if count > self.input.len() {
                    return Err(Amf0Error::Truncated);
                }
                let mut items = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.f64()?;
                let timezone = self.u16()? as i16;
                Amf0Value::Date { millis, timezone }
            }
            marker::LONG_STRING => {
                let len = self.u32()? as usize;
                if len > self.limits.max_long_string {
                    return Err(Amf0Error::StringTooLong {
                        length: len,
                        limit: self.limits.max_long_string,
                    });
                }
                Amf0Value::LongString(self.utf8(len)?)
            }
            marker::AVMPLUS => return Err(Amf0Error::Amf3Switch),
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    /// Properties up to the object-end marker (an empty name followed by 0x09).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.input.first() == Some(&marker::OBJECT_END) {
                self.take(1)?;
                return Ok(props);
            }
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

/// Decodes every value in a whole body with the default limits.
pub fn decode_all(body: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    Amf0Decoder::new(body, Amf0Limits::default()).decode_all()
}

impl Amf0Value {
    /// An object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Amf0Value::String(s.into())
    }

    /// The text of a String or LongString.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a Number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The properties of an Object or EcmaArray.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => Some(props),
            _ => None,
        }
    }

    /// The first property called `key` of an Object or EcmaArray.
    pub fn property(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Appends the AMF0 encoding of this value.
    ///
    /// Strings longer than 65535 bytes are written as long strings. Property names longer than
    /// 65535 bytes cannot be expressed in AMF0; they are cut at the last character boundary
    /// that fits (decoded values never have such names).
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Amf0Value::Number(n) => {
                out.put_u8(marker::NUMBER);
                out.put_f64(*n);
            }
            Amf0Value::Boolean(b) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Amf0Value::String(s) | Amf0Value::LongString(s) => match u16::try_from(s.len()) {
                Ok(len) if matches!(self, Amf0Value::String(_)) => {
                    out.put_u8(marker::STRING);
                    out.put_u16(len);
                    out.put_slice(s.as_bytes());
                }
                _ => {
                    out.put_u8(marker::LONG_STRING);
                    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
                    out.put_slice(&s.as_bytes()[..s.len().min(u32::MAX as usize)]);
                }
            },
            Amf0Value::Object(props) => {
                out.put_u8(marker::OBJECT);
                encode_properties(props, out);
            }
            Amf0Value::Null => out.put_u8(marker::NULL),
            Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
            Amf0Value::EcmaArray(props) => {
                out.put_u8(marker::ECMA_ARRAY);
                out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
                encode_properties(props, out);
            }
            Amf0Value::StrictArray(items) => {
                out.put_u8(marker::STRICT_ARRAY);
                out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
                for item in items {
                    item.encode(out);
                }
            }
            Amf0Value::Date { millis, timezone } => {
                out.put_u8(marker::DATE);
                out.put_f64(*millis);
                out.put_i16(*timezone);
            }
        }
    }
}

/// Writes properties and the object-end marker.
fn encode_properties(props: &[(String, Amf0Value)], out: &mut impl BufMut) {
    for (key, value) in props {
        let mut end = key.len().min(usize::from(u16::MAX));
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        out.put_u16(end as u16);
        out.put_slice(&key.as_bytes()[..end]);
        value.encode(out);
    }
    out.put_slice(&[0, 0, marker::OBJECT_END]);
}

/// Encodes a sequence of values into a new buffer.
pub fn encode_all<'v>(values: impl IntoIterator<Item = &'v Amf0Value>) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    for value in values {
        value.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_command_fixture_decodes() {
        #[rustfmt::skip]
        let body: &[u8] = &[
            0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', // String "connect"
            0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,                        // Number 1.0
            0x03,                                                      // Object
            0x00, 0x03, b'a', b'p', b'p',                              //   key "app"
            0x02, 0x00, 0x04, b'l', b'i', b'v', b'e',                  //   String "live"
            0x00, 0x04, b'f', b'p', b'a', b'd',                        //   key "fpad"
            0x01, 0x00,                                                //   Boolean false
            0x00, 0x00, 0x09,                                          // object end
        ];
        let values = decode_all(body).unwrap();
        assert_eq!(
            values,
            vec![
                Amf0Value::string("connect"),
                Amf0Value::Number(1.0),
                Amf0Value::object([
                    ("app", Amf0Value::string("live")),
                    ("fpad", Amf0Value::Boolean(false)),
                ]),
            ]
        );
        assert_eq!(&encode_all(&values)[..], body);
    }

    #[test]
    fn every_supported_type_round_trips() {
        let value = Amf0Value::StrictArray(vec![
            Amf0Value::Number(-2.5),
            Amf0Value::Boolean(true),
            Amf0Value::string("héllo"),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::EcmaArray(vec![("duration".into(), Amf0Value::Number(0.0))]),
            Amf0Value::Date {
                millis: 1.7e12,
                timezone: -60,
            },
            Amf0Value::LongString("x".repeat(70_000)),
            Amf0Value::object([("nested", Amf0Value::object([("a", Amf0Value::Null)]))]),
        ]);
        let bytes = encode_all([&value]);
        assert_eq!(decode_all(&bytes).unwrap(), vec![value]);
    }

    #[test]
    fn long_plain_string_is_written_as_long_string() {
        let bytes = encode_all([&Amf0Value::String("y".repeat(70_000))]);
        assert_eq!(bytes[0], 0x0C);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![Amf0Value::LongString("y".repeat(70_000))]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 100 000 nested strict arrays of one element each.
        let mut body = Vec::new();
        for _ in 0..100_000 {
            body.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        body.push(0x05);
        assert!(matches!(decode_all(&body), Err(Amf0Error::TooDeep(32))));
        // Objects too.
        let mut body = Vec::new();
        for _ in 0..100_000 {
            body.extend_from_slice(&[0x03, 0, 1, b'k']);
        }
        assert!(matches!(decode_all(&body), Err(Amf0Error::TooDeep(32))));
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        // Strict array claiming 4 billion elements, with 3 bytes behind it.
        let body = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05, 0x05];
        assert!(matches!(decode_all(&body), Err(Amf0Error::Truncated)));
        // Long string claiming 4 GiB.
        let body = [0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a'];
        assert!(matches!(
            decode_all(&body),
            Err(Amf0Error::StringTooLong { .. })
        ));
        // Short string claiming 65535 bytes, with 1 behind it.
        let body = [0x02, 0xFF, 0xFF, b'a'];
        assert!(matches!(decode_all(&body), Err(Amf0Error::Truncated)));
    }

    #[test]
    fn too_many_values_is_an_error() {
        let mut body = vec![0x0A, 0, 0, 0x40, 0]; // strict array of 16384 elements
        body.extend(std::iter::repeat_n(0x05, 16_384));
        assert!(matches!(
            decode_all(&body),
            Err(Amf0Error::TooManyValues(8192))
        ));
    }

    #[test]
    fn truncated_and_unsupported_inputs_are_errors() {
        for body in [
            &[0x00, 0x3F][..],             // number cut short
            &[0x03, 0x00, 0x01, b'a'][..], // object cut after a key
            &[0x03][..],                   // object with nothing
            &[0x01][..],                   // boolean without its byte
        ] {
            assert!(
                matches!(decode_all(body), Err(Amf0Error::Truncated)),
                "{body:?}"
            );
        }
        assert!(matches!(
            decode_all(&[0x07, 0, 1]),
            Err(Amf0Error::UnsupportedMarker(0x07))
        ));
        assert!(matches!(
            decode_all(&[0x09]),
            Err(Amf0Error::UnsupportedMarker(0x09))
        ));
        assert!(matches!(
            decode_all(&[0x11, 0x01]),
            Err(Amf0Error::Amf3Switch)
        ));
        assert!(matches!(
            decode_all(&[0x02, 0, 1, 0xFF]),
            Err(Amf0Error::InvalidUtf8(_))
        ));
    }
}
