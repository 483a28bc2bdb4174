//! The connections under the HTTP server. hyper answers a request whose URI is too long (414)
//! or whose head is too large (431) itself, before any service sees it, with an empty body and
//! no hook to change it; the API promises a SCIM error body for every failure. So each
//! connection's writes are watched for exactly that automatic answer (a 414 or 431 head with
//! `content-length: 0`, which no handler here writes), and it is sent as a SCIM error instead.
//! Every other byte passes through untouched.

use crate::error::ScimError;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The service's listener: TCP connections wrapped in [`ScimErrors`].
pub struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = ScimErrors<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (
            ScimErrors {
                inner: io,
                pending: Vec::new(),
                sent: 0,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose automatic 414/431 answers get SCIM error bodies.
pub struct ScimErrors<T> {
    inner: T,
    /// A rewritten answer not yet written out, and how much of it was.
    pending: Vec<u8>,
    sent: usize,
}

/// The SCIM answer for hyper's automatic head `head`, if it is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let (status, detail) =
        if head.starts_with(b"HTTP/1.1 414 ") || head.starts_with(b"HTTP/1.0 414 ") {
            (
                414,
                "the request URI is too long (at most 64 KiB): send a long filter by POST .search",
            )
        } else if head.starts_with(b"HTTP/1.1 431 ") || head.starts_with(b"HTTP/1.0 431 ") {
            (
                431,
                "the request's header fields are too large or too many (at most 100)",
            )
        } else {
            return None;
        };
    let text = std::str::from_utf8(head).ok()?;
    let fields = text.strip_suffix("\r\n\r\n")?;
    let mut lines = fields.split("\r\n");
    let status_line = lines.next()?;
    let mut empty = false;
    let mut kept = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            empty = value.trim() == "0";
        } else if !name.eq_ignore_ascii_case("content-type")
            && !name.eq_ignore_ascii_case("connection")
        {
            kept.push(line);
        }
    }
    if !empty {
        return None;
    }
    let body = ScimError::new(status, None, detail).body().to_string();
    let mut out = format!("{status_line}\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/scim+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> ScimErrors<T> {
    /// Writes out what is pending.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ScimErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ScimErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(answer) = rewrite(buf) {
            // Taken whole: the rewritten answer goes out in its place, now or on the next
            // write, flush or shutdown.
            self.pending = answer;
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(answer) = rewrite(only) {
                self.pending = answer;
                let _ = self.drain(cx)?;
                return Poll::Ready(Ok(only.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn only_an_empty_414_or_431_head_is_rewritten() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 03:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(auto).expect("rewritten")).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(out.contains("\r\ndate: Fri, 04 Dec 2026"), "{out}");
        assert!(out.contains("content-type: application/scim+json"), "{out}");
        let body = out.split_once("\r\n\r\n").unwrap().1;
        assert!(
            out.contains(&format!("content-length: {}\r\n", body.len())),
            "{out}"
        );
        assert_eq!(
            rewrite(b"HTTP/1.1 431 X\r\ncontent-length: 12\r\n\r\n"),
            None
        );
        assert_eq!(
            rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            rewrite(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n"),
            None
        );
    }
}
