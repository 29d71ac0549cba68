//! The access log's buffered writer: connection tasks append finished lines to a shared
//! buffer (one short lock, no system call); a dedicated thread writes the buffer out every
//! [`FLUSH_EVERY`] or as soon as [`FLUSH_AT`] bytes are waiting, so a busy LB makes a few
//! hundred writes a second however many requests it logs, and a slow or blocked stderr never
//! stalls a proxy task.
//!
//! Data flow: `push(line)` -> pending buffer (bounded by [`MAX_PENDING`]: past it lines are
//! dropped and counted, never queued without limit) -> writer thread swaps the buffer out and
//! writes it in pieces of at most [`WRITE_PIECE`] bytes cut at line ends (writes that small are
//! atomic on pipes, so lines never interleave with other stderr writers) -> at `close` the
//! rest is written and the thread ends.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a line waits before being written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Pending bytes that wake the writer early.
pub const FLUSH_AT: usize = 64 * 1024;
/// Pending bytes past which new lines are dropped (the writer cannot keep up).
pub const MAX_PENDING: usize = 4 * 1024 * 1024;
/// Largest single write (PIPE_BUF on Linux: atomic on pipes).
pub const WRITE_PIECE: usize = 4096;

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer was woken early and has not taken the buffer yet (one wake per batch).
    wake_sent: bool,
    /// Lines dropped since the last write.
    dropped: u64,
    closed: bool,
}

/// The shared buffer and its writer thread.
pub struct Sink {
    state: Mutex<State>,
    wake: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    /// Starts the writer thread on `out`.
    pub fn start(out: Box<dyn Write + Send>) -> std::io::Result<Arc<Sink>> {
        let sink = Sink::unstarted();
        let s = sink.clone();
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || s.run(out))?;
        *sink.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(sink)
    }

    fn unstarted() -> Arc<Sink> {
        Arc::new(Sink {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            writer: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A byte buffer and flags stay valid after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one line (which must end with `\n`).
    pub fn push(&self, line: &[u8]) {
        let mut s = self.lock();
        if s.closed || s.pending.len() + line.len() > MAX_PENDING {
            s.dropped += 1;
            return;
        }
        s.pending.extend_from_slice(line);
        if s.pending.len() >= FLUSH_AT && !s.wake_sent {
            s.wake_sent = true;
            self.wake.notify_one();
        }
    }

    /// Writes what is pending, stops the writer thread and waits for it. Later lines are
    /// dropped.
    pub fn close(&self) {
        {
            let mut s = self.lock();
            s.closed = true;
            self.wake.notify_one();
        }
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::warn!("access log writer thread panicked");
        }
    }

    fn run(&self, mut out: Box<dyn Write + Send>) {
        let mut batch = Vec::new();
        loop {
            let (closed, dropped) = {
                let mut s = self.lock();
                if s.pending.is_empty() && !s.closed {
                    s = self
                        .wake
                        .wait_timeout(s, FLUSH_EVERY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                std::mem::swap(&mut s.pending, &mut batch);
                s.wake_sent = false;
                (s.closed, std::mem::take(&mut s.dropped))
            };
            if dropped > 0 {
                batch.extend_from_slice(
                    format!("access log: {dropped} lines dropped (the writer could not keep up)\n")
                        .as_bytes(),
                );
            }
            if let Err(e) = write_pieces(&mut *out, &batch) {
                tracing::warn!(error = %e, "access log: write failed");
            }
            batch.clear();
            if closed {
                return;
            }
        }
    }
}

/// Writes `data` in pieces of at most [`WRITE_PIECE`] bytes, cut after a line end when one
/// is in reach (a longer line is written on its own).
fn write_pieces(out: &mut dyn Write, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let window = data.get(..WRITE_PIECE.min(data.len())).unwrap_or(data);
        let cut = if window.len() == data.len() {
            data.len()
        } else {
            match window.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => data
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |i| i + 1),
            }
        };
        let (piece, rest) = data.split_at(cut);
        out.write_all(piece)?;
        data = rest;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each `write` call.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_after_close() {
        let rec = Recorder::default();
        let sink = Sink::start(Box::new(rec.clone())).unwrap();
        let lines: Vec<String> = (0..2000)
            .map(|i| format!("line {i} {}\n", "x".repeat(i % 90)))
            .collect();
        for l in &lines {
            sink.push(l.as_bytes());
        }
        sink.close();
        sink.push(b"after close\n");
        let writes = rec.0.lock().unwrap().clone();
        assert!(
            writes.len() < lines.len() / 10,
            "batched: {} writes",
            writes.len()
        );
        for w in &writes {
            assert!(w.len() <= WRITE_PIECE, "piece of {} bytes", w.len());
            assert_eq!(w.last(), Some(&b'\n'), "pieces end at line ends");
        }
        let all: Vec<u8> = writes.concat();
        assert_eq!(String::from_utf8(all).unwrap(), lines.concat());
    }

    #[test]
    fn pieces_cut_at_line_ends_and_long_lines_go_alone() {
        let rec = Recorder::default();
        let long = format!("{}\n", "y".repeat(WRITE_PIECE * 2));
        let data = format!("short\n{long}tail\n");
        write_pieces(&mut rec.clone(), data.as_bytes()).unwrap();
        let writes = rec.0.lock().unwrap().clone();
        assert_eq!(
            writes,
            vec![b"short\n".to_vec(), long.into_bytes(), b"tail\n".to_vec()]
        );
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        let rec = Recorder::default();
        // No writer thread: the buffer cannot drain while it is being filled.
        let sink = Sink::unstarted();
        let filler = vec![b'\n'; MAX_PENDING - 4];
        sink.push(&filler);
        sink.push(b"dropped\n");
        sink.push(b"ok\n");
        sink.lock().closed = true;
        sink.run(Box::new(rec.clone()));
        let all = rec.0.lock().unwrap().concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.ends_with("\nok\naccess log: 1 lines dropped (the writer could not keep up)\n"),
            "{}",
            &text[text.len() - 100..]
        );
        assert!(!text.contains("dropped\nok"));
    }
}
