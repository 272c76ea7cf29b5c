//! A socket's write buffer that holds memory only while it has something to
//! write. Frames written between two flushes go out in one write (as with
//! `tokio::io::BufWriter`), but the buffer is allocated on the first write and
//! released once flushed, so the many idle sockets of a node hold none (a
//! `BufWriter` keeps its whole capacity for the socket's life).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// Writes at least this large skip the buffer (after flushing it).
const WRITE_THROUGH: usize = 16 * 1024;
/// First allocation: a few typical frames.
const FIRST_ALLOC: usize = 1024;

pub struct LazyBufWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    written: usize,
}

impl<W: AsyncWrite + Unpin> LazyBufWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, buf: Vec::new(), written: 0 }
    }

    /// Bytes buffered and not yet written (for tests).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Capacity held (for tests): zero whenever the buffer is flushed.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn flush_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        // Everything is out: give the memory back.
        self.buf = Vec::new();
        Poll::Ready(Ok(()))
    }

    fn append(&mut self, data: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(data.len().max(FIRST_ALLOC));
        }
        self.buf.extend_from_slice(data);
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LazyBufWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.buf.len() + data.len() > WRITE_THROUGH {
            ready!(me.flush_buf(cx))?;
            if data.len() >= WRITE_THROUGH {
                return Pin::new(&mut me.inner).poll_write(cx, data);
            }
        }
        me.append(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if me.buf.len() + total > WRITE_THROUGH {
            ready!(me.flush_buf(cx))?;
            if total >= WRITE_THROUGH {
                return Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
            }
        }
        if me.buf.capacity() == 0 {
            me.buf.reserve_exact(total.max(FIRST_ALLOC));
        }
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.flush_buf(cx))?;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.flush_buf(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn coalesces_until_flush_then_releases_memory() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = LazyBufWriter::new(a);
        assert_eq!(w.capacity(), 0, "nothing allocated before the first write");
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        assert_eq!(w.buffered(), 11);
        let mut got = [0u8; 11];
        // Nothing reached the other side before the flush.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), b.read_exact(&mut got)).await.is_err());
        w.flush().await.unwrap();
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        assert_eq!(w.capacity(), 0, "memory released once flushed");
    }

    #[tokio::test]
    async fn large_and_vectored_writes_arrive_whole_and_in_order() {
        let (a, mut b) = tokio::io::duplex(1 << 22);
        let mut w = LazyBufWriter::new(a);
        w.write_all(b"head").await.unwrap();
        let big = vec![7u8; WRITE_THROUGH * 2];
        w.write_all(&big).await.unwrap();
        let slices = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        let n = w.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 4);
        w.flush().await.unwrap();
        let mut got = vec![0u8; 4 + big.len() + 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4], b"head");
        assert!(got[4..4 + big.len()].iter().all(|&x| x == 7));
        assert_eq!(&got[4 + big.len()..], b"abcd");
        assert_eq!(w.capacity(), 0);
    }
}
