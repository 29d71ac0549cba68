//! The text log's writer: one event, one line, whatever peers put in the names that get logged.
//!
//! Stream names, app names, paths and User-Agents come from the network; a name with a newline
//! in it would otherwise start a line of its own that looks like a log event (log forging), and
//! an escape sequence would reach an operator's terminal. The fmt layer formats each event into
//! one buffer and writes it with one call, so escaping that buffer's control characters (all
//! but tab and the event's final newline) covers every field of every event in one place. The
//! JSON format needs no help (JSON strings escape control characters), and passes through
//! unchanged.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// `stderr`, one escaped line per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = EscapingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(io::stderr())
    }
}

/// Writes what it gets with [`escape`] applied.
#[derive(Debug)]
pub struct EscapingWriter<W>(pub W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `line` with its control characters written out (`\n`, `\r`, `\x1b`...), except tab and one
/// final newline.
pub fn escape(line: &[u8]) -> Cow<'_, [u8]> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if !body.iter().any(|b| control(*b)) {
        return Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if control(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_line_stays_inside_its_event() {
        let event = b"INFO publish refused app=live\nERROR forged event\r\x1b[31m\n";
        assert_eq!(
            &*escape(event),
            &b"INFO publish refused app=live\\nERROR forged event\\r\\x1b[31m\n"[..]
        );
        assert!(matches!(escape(b"plain\tline\n"), Cow::Borrowed(_)));
        assert_eq!(&*escape(b"no newline\x07"), &b"no newline\\x07"[..]);
        let mut w = EscapingWriter(Vec::new());
        w.write_all(b"a\nb\n").unwrap();
        assert_eq!(w.0, b"a\\nb\n");
    }
}
