//! Connections: how many the server keeps (MAX_CONNECTIONS), and how long each may take to
//! say what it wants (HEADER_READ_TIMEOUT_MS) or sit idle between requests
//! (IDLE_TIMEOUT_MS).
//!
//! poem 3.1's server has only an idle timer, which a client sending a byte every few
//! seconds defeats, sets no timer for hyper's header-read timeout, and keeps every
//! connection it accepts: a few thousand clients that never finish their headers held the
//! server's file descriptors until it stopped accepting anyone. This acceptor wraps each
//! TCP stream in a [`Guarded`] stream that enforces both deadlines on reads (hyper closes a
//! connection whose read fails) and holds one of MAX_CONNECTIONS places; a connection over
//! the cap is accepted and closed at once, so the backlog never fills with it. A client
//! that stops reading a response (its socket stays full for IDLE_TIMEOUT_MS) fails the
//! write, so a live stream nobody reads cannot hold its connection for ever.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    listener::{Acceptor, TcpAcceptor},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

/// Connections the kernel may queue before we accept them (it caps this at
/// `net.core.somaxconn`). tokio's default, 1,024, overflows when a few thousand clients
/// connect at once: the kernel then resets connections that never reached us.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr`, with [`LISTEN_BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpAcceptor> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    TcpAcceptor::from_std(socket.listen(LISTEN_BACKLOG)?.into_std()?)
}

/// The limits every connection lives under.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// From a request's first byte (or the connection's start) to the end of its headers.
    pub header_read_timeout: Duration,
    /// From the end of a response to the first byte of the next request.
    pub idle_timeout: Duration,
}

/// Accepts from `inner` within [`ConnectionLimits`].
pub struct GuardedAcceptor<A> {
    inner: A,
    limits: ConnectionLimits,
    places: Arc<Semaphore>,
}

impl<A: Acceptor> GuardedAcceptor<A> {
    pub fn new(inner: A, limits: ConnectionLimits) -> Self {
        let places = Arc::new(Semaphore::new(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
        GuardedAcceptor { inner, limits, places }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        loop {
            let (stream, local, remote, scheme) = self.inner.accept().await?;
            // Over the cap: closed at once (dropped), and on to the next one.
            let Ok(place) = self.places.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            return Ok((Guarded::new(stream, self.limits, place), local, remote, scheme));
        }
    }
}

/// `timeout` from now; 0 (or a time past any clock) means none: in thirty years.
fn deadline(timeout: Duration) -> Instant {
    let never = Duration::from_secs(30 * 365 * 86_400);
    let timeout = if timeout.is_zero() { never } else { timeout.min(never) };
    Instant::now() + timeout
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers (or waiting for a new connection's first request): the
    /// header deadline applies.
    Head,
    /// The headers are in; the body and the handler are REQUEST_TIMEOUT_MS's business.
    Request,
    /// A response went out; waiting for the next request: the idle deadline applies.
    Idle,
}

/// A stream that fails its reads once its current deadline has passed.
pub struct Guarded<T> {
    inner: T,
    limits: ConnectionLimits,
    phase: Phase,
    /// When the current phase's deadline passes (none in [`Phase::Request`]).
    timer: Pin<Box<Sleep>>,
    /// The last bytes of the head read so far, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
    _place: OwnedSemaphorePermit,
}

impl<T> Guarded<T> {
    fn new(inner: T, limits: ConnectionLimits, place: OwnedSemaphorePermit) -> Self {
        Guarded {
            inner,
            limits,
            phase: Phase::Head,
            timer: Box::pin(tokio::time::sleep_until(deadline(limits.header_read_timeout))),
            tail: [0; 3],
            _place: place,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        let timeout = match phase {
            Phase::Head => self.limits.header_read_timeout,
            Phase::Idle => self.limits.idle_timeout,
            Phase::Request => return,
        };
        self.timer.as_mut().reset(deadline(timeout));
    }

    /// Follows the bytes just read: a request starts, its head ends.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.enter(Phase::Head);
            self.tail = [0; 3];
        }
        if self.phase != Phase::Head {
            return;
        }
        // The end of the head, possibly split across reads: the last 3 bytes seen, then these.
        let mut joint = [0u8; 6];
        let head = bytes.len().min(3);
        joint[..3].copy_from_slice(&self.tail);
        joint[3..3 + head].copy_from_slice(&bytes[..head]);
        let end = b"\r\n\r\n";
        if joint[..3 + head].windows(4).any(|w| w == end) || bytes.windows(4).any(|w| w == end) {
            self.enter(Phase::Request);
            return;
        }
        // Keep the last 3 bytes of everything seen so far.
        if bytes.len() >= 3 {
            self.tail.copy_from_slice(&bytes[bytes.len() - 3..]);
        } else {
            self.tail.rotate_left(bytes.len());
            self.tail[3 - bytes.len()..].copy_from_slice(bytes);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if this.phase != Phase::Request && this.timer.as_mut().poll(cx).is_ready() {
                    let what = match this.phase {
                        Phase::Head => "the request's headers did not arrive within HEADER_READ_TIMEOUT_MS",
                        _ => "the connection was idle for IDLE_TIMEOUT_MS",
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Guarded<T> {
    /// After a write the client did not take: once a response is under way, a client that
    /// accepts none of it for IDLE_TIMEOUT_MS (it stopped reading: a full socket) is
    /// disconnected, or it would hold its connection, and a stream its place, for ever.
    /// The idle timer runs from the last write that went through.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        (self.phase == Phase::Idle && self.timer.as_mut().poll(cx).is_ready()).then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the client accepted none of the response for IDLE_TIMEOUT_MS",
            )
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        // A response is going out: the next read begins the wait for the next request.
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.enter(Phase::Idle);
        }
        if written.is_pending()
            && let Some(stalled) = this.stalled(cx)
        {
            return Poll::Ready(Err(stalled));
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.enter(Phase::Idle);
        }
        if written.is_pending()
            && let Some(stalled) = this.stalled(cx)
        {
            return Poll::Ready(Err(stalled));
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_pending()
            && let Some(stalled) = this.stalled(cx)
        {
            return Poll::Ready(Err(stalled));
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a head is found however the reads split it.
    #[tokio::test]
    async fn the_end_of_the_headers_is_found_across_any_split_of_the_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let limits = ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        for size in 1..=head.len() {
            let place = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let mut guarded = Guarded::new((), limits, place);
            let chunks: Vec<&[u8]> = head.chunks(size).collect();
            for (n, chunk) in chunks.iter().enumerate() {
                assert_eq!(guarded.phase, Phase::Head, "split by {size}, before chunk {n}");
                guarded.saw(chunk);
            }
            assert_eq!(guarded.phase, Phase::Request, "split by {size}");
        }
        let place = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut guarded = Guarded::new((), limits, place);
        guarded.saw(b"GET / HTTP/1.1\r\nX: \r\n\r");
        guarded.saw(b"x\r\n");
        assert_eq!(guarded.phase, Phase::Head, "\\r\\n\\r then x is not the end");
    }
}
