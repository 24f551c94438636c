//! Log output: tracing's fmt lines (text or JSON, LOG_FORMAT) on stderr, through a
//! buffer, as nginx's `access_log ... buffer= flush=` does.
//!
//! Why: one `write` per request (the access log line) cost about a tenth of the service's
//! CPU on the get-one benchmark. Lines now collect in memory and go out in one write
//! when [`FLUSH_INTERVAL`] has passed, when [`FLUSH_AT_BYTES`] have collected, when a
//! warning or an error is logged (those are never held back, and everything before them
//! goes first, in order), on a panic, and when the process ends through `main`. What a
//! `kill -9` can cost: the last [`FLUSH_INTERVAL`] of lines.

use std::{
    io::{self, Write},
    sync::{Arc, Mutex, MutexGuard},
    thread,
    time::Duration,
};

use tracing::{Level, Metadata};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

use crate::config::LogFormat;

/// Longest time a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this full goes out at once.
pub const FLUSH_AT_BYTES: usize = 64 * 1024;

/// Sets up the global subscriber (RUST_LOG, default `default_level`) writing through a
/// [`LineBuffer`] on stderr, with a thread that flushes it every [`FLUSH_INTERVAL`] and a
/// panic hook that flushes it before the panic message. Keep the guard until the end of
/// `main`: dropping it writes out what is left.
pub fn init(format: LogFormat, default_level: &str) -> FlushOnDrop {
    let sink = LogSink(Arc::new(LineBuffer::new(io::stderr())));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }

    let flusher = sink.clone();
    thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || {
            loop {
                thread::sleep(FLUSH_INTERVAL);
                // Nothing to do about a stderr that fails: the next write tries again.
                let _ = flusher.0.flush();
            }
        })
        .expect("starting the log flush thread");
    let on_panic = sink.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = on_panic.0.flush();
        previous(info);
    }));
    FlushOnDrop(sink)
}

/// Writes out the buffered lines when dropped (the end of `main`).
pub struct FlushOnDrop(LogSink);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let _ = self.0.0.flush();
    }
}

/// Lines on their way to `W`: appended under a lock, written out in one `write_all`.
pub struct LineBuffer<W: Write> {
    state: Mutex<Pending<W>>,
}

struct Pending<W> {
    bytes: Vec<u8>,
    out: W,
}

impl<W: Write> LineBuffer<W> {
    pub fn new(out: W) -> Self {
        LineBuffer { state: Mutex::new(Pending { bytes: Vec::with_capacity(FLUSH_AT_BYTES), out }) }
    }

    /// Adds `line`; writes everything out when `urgent` or when the buffer is full.
    pub fn append(&self, line: &[u8], urgent: bool) -> io::Result<()> {
        let mut state = self.lock();
        state.bytes.extend_from_slice(line);
        if urgent || state.bytes.len() >= FLUSH_AT_BYTES { state.write_out() } else { Ok(()) }
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) -> io::Result<()> {
        self.lock().write_out()
    }

    /// What the output has received so far (tests).
    pub fn with_output<T>(&self, read: impl FnOnce(&W) -> T) -> T {
        read(&self.lock().out)
    }

    fn lock(&self) -> MutexGuard<'_, Pending<W>> {
        // A panic while holding the lock leaves whole lines behind (append is one extend):
        // still worth writing.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<W: Write> Pending<W> {
    fn write_out(&mut self) -> io::Result<()> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        // Cleared whatever happens: a stderr that fails must not make the buffer grow.
        let result = self.out.write_all(&self.bytes).and_then(|()| self.out.flush());
        self.bytes.clear();
        result
    }
}

/// tracing-subscriber's writer factory over a shared [`LineBuffer`]: warnings and errors
/// are urgent.
pub struct LogSink<W: Write = io::Stderr>(pub Arc<LineBuffer<W>>);

impl<W: Write> Clone for LogSink<W> {
    fn clone(&self) -> Self {
        LogSink(self.0.clone())
    }
}

/// One log line's writer (tracing-subscriber writes a formatted line with one `write_all`).
pub struct LineWriter<'a, W: Write> {
    buffer: &'a LineBuffer<W>,
    urgent: bool,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.append(bytes, self.urgent)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for LogSink<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { buffer: &self.0, urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        // tracing orders levels by verbosity: WARN and ERROR are the ones <= WARN.
        LineWriter { buffer: &self.0, urgent: *meta.level() <= Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(buffer: &LineBuffer<Vec<u8>>) -> String {
        buffer.with_output(|out| String::from_utf8(out.clone()).unwrap())
    }

    #[test]
    fn lines_wait_until_a_flush_and_then_go_out_in_order() {
        let buffer = LineBuffer::new(Vec::new());
        buffer.append(b"one\n", false).unwrap();
        buffer.append(b"two\n", false).unwrap();
        assert_eq!(written(&buffer), "");
        buffer.flush().unwrap();
        assert_eq!(written(&buffer), "one\ntwo\n");
        buffer.flush().unwrap();
        assert_eq!(written(&buffer), "one\ntwo\n", "a second flush writes nothing again");
    }

    #[test]
    fn an_urgent_line_goes_out_at_once_after_everything_before_it() {
        let buffer = LineBuffer::new(Vec::new());
        buffer.append(b"request\n", false).unwrap();
        buffer.append(b"error\n", true).unwrap();
        assert_eq!(written(&buffer), "request\nerror\n");
    }

    #[test]
    fn a_full_buffer_goes_out_without_waiting() {
        let buffer = LineBuffer::new(Vec::new());
        let line = vec![b'x'; 1000];
        let mut sent = 0;
        while written(&buffer).is_empty() {
            buffer.append(&line, false).unwrap();
            sent += line.len();
            assert!(sent <= FLUSH_AT_BYTES + line.len(), "never written out");
        }
        assert_eq!(written(&buffer).len(), sent);
        assert!(sent >= FLUSH_AT_BYTES);
    }

    #[test]
    fn warnings_and_errors_are_urgent_info_is_not() {
        use tracing_subscriber::{fmt, layer::SubscriberExt};
        let sink = LogSink(Arc::new(LineBuffer::new(Vec::new())));
        let subscriber =
            tracing_subscriber::registry().with(fmt::layer().with_ansi(false).with_writer(sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("held");
            assert_eq!(written(&sink.0), "");
            tracing::warn!("urgent");
        });
        let out = written(&sink.0);
        let held = out.find("held").expect("the info line, written before the warning");
        assert!(held < out.find("urgent").unwrap(), "{out}");
    }
}
