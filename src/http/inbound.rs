//! A read buffer we own, so that bytes read past the end of a head are never lost.
//!
//! Pipelined requests, the first body bytes that arrive with a head, and the bytes Duplicati
//! writes right after its `101 Switching Protocols` all sit in this buffer until someone consumes
//! them. (async-h1 builds a fresh `BufReader` per request and so loses exactly these bytes.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::AsyncRead;
use futures::AsyncReadExt;

/// Large enough for the biggest head we accept plus a TLS record's worth of body.
const CAPACITY: usize = 32 * 1024;

pub struct Inbound<R> {
    io: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R> Inbound<R> {
    /// Bytes read from the peer and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

impl<R: AsyncRead + Unpin> Inbound<R> {
    pub fn new(io: R) -> Self {
        Inbound {
            io,
            buf: vec![0; CAPACITY].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes behind the buffered ones. Returns how many arrived; 0 means end of stream.
    /// Fails if the buffer is full, which callers prevent by bounding what they wait for.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "read buffer full",
                ));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    pub fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.io, rest)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Inbound<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.start < this.end {
            let n = out.len().min(this.end - this.start);
            out[..n].copy_from_slice(&this.buf[this.start..this.start + n]);
            this.consume(n);
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn keeps_bytes_past_what_was_consumed() {
        block_on(async {
            let mut inbound = Inbound::new(&b"HEAD\r\n\r\nbody"[..]);
            inbound.fill().await.unwrap();
            inbound.consume(8);
            let mut rest = Vec::new();
            inbound.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"body");
        });
    }
}
