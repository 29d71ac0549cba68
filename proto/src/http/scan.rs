//! Finding where a head ends before tokenising it. A slow client delivers its head a few
//! bytes per read; re-tokenising the whole buffer on every read would cost quadratic time,
//! so [`HeadScanner`] remembers how far it has searched for the empty line and [`drive`] only
//! hands complete heads to the tokeniser (plus one early look at a partial head, so garbage
//! is refused without waiting for the size limit).
//!
//! Data flow: read buffer -> [`drive`] -> limits checked -> [`HeadScanner::find_end`] ->
//! tokeniser callback of the request or response parser -> head or error.

use super::head::{HeadError, HeadLimits};

/// Most CR/LF bytes accepted before a start line (RFC 9112 asks to tolerate a stray CRLF,
/// e.g. after a POST body; many more is an attack on the parser).
pub const MAX_LEADING_EMPTY_LINE_BYTES: usize = 16;

/// Incremental search for the empty line that ends a head. Remembers how far it looked, so
/// feeding a head one byte at a time costs linear time overall.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadScanner {
    /// Offset from which the next search starts (a `\n` whose successors were not in yet is
    /// searched again).
    scanned: usize,
    /// Whether the partial head was already shown to the tokeniser once, so garbage (a TLS
    /// hello on a plain port, say) is rejected without waiting for the size limit.
    probed: bool,
}

impl HeadScanner {
    /// Length of the head up to and including the first empty line, if `buf` has one.
    pub(crate) fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        let mut pos = self.scanned.min(buf.len());
        while let Some(found) = memchr::memchr(b'\n', buf.get(pos..).unwrap_or_default()) {
            let nl = pos + found;
            match (buf.get(nl + 1), buf.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = nl;
                    return None;
                }
                _ => pos = nl + 1,
            }
        }
        self.scanned = buf.len();
        None
    }

    /// Continue the search after `end` (the tokeniser found only leading empty lines there).
    pub(crate) fn skip_past(&mut self, end: usize) {
        self.scanned = end.saturating_sub(1);
    }

    /// Whether to run the tokeniser over an incomplete head now (only once per head).
    pub(crate) fn should_probe(&mut self) -> bool {
        !std::mem::replace(&mut self.probed, true)
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Shared parse loop: waits for a whole head (bounded by `limits`), probes an incomplete head
/// once for early errors, and hands complete heads to `tokenise`, which returns `Ok(None)`
/// when the "head" was only empty lines before the start line.
pub(crate) fn drive<T>(
    scanner: &mut HeadScanner,
    limits: &HeadLimits,
    buf: &[u8],
    mut tokenise: impl FnMut(&[u8]) -> Result<Option<T>, HeadError>,
) -> Result<Option<T>, HeadError> {
    let limit = limits.head_bytes();
    // Bounding leading empty lines also bounds the loop below, which re-tokenises from the
    // start each time it only found empty lines.
    let leading = buf
        .iter()
        .take(MAX_LEADING_EMPTY_LINE_BYTES + 1)
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if leading > MAX_LEADING_EMPTY_LINE_BYTES {
        return Err(HeadError::LeadingEmptyLines {
            limit: MAX_LEADING_EMPTY_LINE_BYTES,
        });
    }
    loop {
        let Some(end) = scanner.find_end(buf) else {
            if buf.len() > limit {
                return Err(HeadError::TooLarge { limit });
            }
            if !buf.is_empty() && scanner.should_probe() {
                // Only an error matters here: a partial head cannot be complete.
                tokenise(buf)?;
            }
            return Ok(None);
        };
        if end > limit {
            return Err(HeadError::TooLarge { limit });
        }
        match tokenise(buf.get(..end).unwrap_or_default())? {
            Some(head) => {
                scanner.reset();
                return Ok(Some(head));
            }
            None => scanner.skip_past(end),
        }
    }
}

/// Offset of the start line: RFC 9112 lets a recipient skip empty lines before it.
pub(crate) fn start_line_offset(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// The start line (without its line ending) beginning at `from`.
pub(crate) fn line_at(buf: &[u8], from: usize) -> &[u8] {
    let rest = buf.get(from..).unwrap_or_default();
    let line = match memchr::memchr(b'\n', rest) {
        Some(end) => rest.get(..end).unwrap_or_default(),
        None => rest,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_crlf_and_bare_lf_ends_incrementally() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let mut scanner = HeadScanner::default();
        // Every prefix shorter than the head: not found; the full head: found at 27.
        for len in 0..27 {
            assert_eq!(scanner.find_end(&head[..len]), None, "prefix {len}");
        }
        assert_eq!(scanner.find_end(head), Some(27));

        let mut scanner = HeadScanner::default();
        assert_eq!(scanner.find_end(b"GET / HTTP/1.0\nA: b\n\nrest"), Some(21));
    }

    #[test]
    fn scanner_can_continue_after_leading_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\n";
        let mut scanner = HeadScanner::default();
        // The leading CRLF CRLF looks like an end; the parser then skips past it.
        assert_eq!(scanner.find_end(buf), Some(4));
        scanner.skip_past(4);
        assert_eq!(scanner.find_end(buf), None);
    }
}
