//! One client connection: a TLS stream with a read buffer, HTTP/1.1 exchanges on it, and the raw
//! bytes a WebSocket reads after its 101 (the buffer may already hold the first frame).

use std::fmt;
use std::time::Duration;

use async_std::net::TcpStream;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;

/// A peer that moves no byte for this long is stuck: far above any pause the gate or the stand-in
/// has a reason to make, far below the gate's 120 s body idle timeout that would end it anyway.
const IO_IDLE: Duration = Duration::from_secs(60);
/// Response heads larger than this are not from the stand-in or the gate (both write a few
/// hundred bytes); stop reading rather than grow without bound.
const MAX_HEAD: usize = 64 * 1024;
/// A close_notify that cannot be written in this time is not worth waiting for at shutdown.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What went wrong, with a short kind for the report's tally.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: &'static str,
    pub msg: String,
}

impl Failure {
    pub fn new(kind: &'static str, msg: impl Into<String>) -> Failure {
        Failure {
            kind,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.msg)
    }
}

/// How the response body is delimited. RFC 9112 §6.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
    None,
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// `Connection: close` from the server: this connection ends after the body.
    pub close: bool,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

pub struct Conn {
    io: TlsStream<TcpStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

fn io_fail(what: &str, e: std::io::Error) -> Failure {
    Failure::new("io", format!("{what}: {e}"))
}

impl Conn {
    pub fn new(io: TlsStream<TcpStream>, buf: usize) -> Conn {
        Conn {
            io,
            buf: vec![0; buf.max(4096)],
            start: 0,
            end: 0,
        }
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Reads more bytes; 0 at end of stream.
    async fn read_more(&mut self) -> Result<usize, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        let read = self.io.read(&mut self.buf[self.end..]);
        let n = async_std::future::timeout(IO_IDLE, read)
            .await
            .map_err(|_| Failure::new("timeout", format!("no bytes for {IO_IDLE:?}")))?
            .map_err(|e| io_fail("read", e))?;
        self.end += n;
        Ok(n)
    }

    /// Reads more bytes; the peer closing here is a failure.
    pub async fn fill(&mut self, during: &str) -> Result<(), Failure> {
        match self.read_more().await? {
            0 => Err(Failure::new(
                "closed",
                format!("connection closed by the gate during {during}"),
            )),
            _ => Ok(()),
        }
    }

    /// At least `n` bytes buffered (the buffer grows for a larger WebSocket frame).
    pub async fn need(&mut self, n: usize, during: &str) -> Result<(), Failure> {
        while self.end - self.start < n {
            if self.start + n > self.buf.len() && self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if n > self.buf.len() {
                self.buf.resize(n, 0);
            }
            self.fill(during).await?;
        }
        Ok(())
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<(), Failure> {
        let write = async {
            self.io.write_all(data).await?;
            self.io.flush().await
        };
        async_std::future::timeout(IO_IDLE, write)
            .await
            .map_err(|_| Failure::new("timeout", format!("write stalled for {IO_IDLE:?}")))?
            .map_err(|e| io_fail("write", e))
    }

    /// Reads one response head.
    pub async fn head(&mut self) -> Result<Head, Failure> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(self.buffered()) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = to_head(&res)?;
                    self.consume(len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if self.buffered().len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Failure::new("protocol", "response head over 64 KiB"))
                }
                Err(e) => return Err(Failure::new("protocol", format!("bad response head: {e}"))),
            }
            self.fill("the response head").await?;
        }
    }

    /// Hands the body to `sink` as it arrives; returns its length.
    pub async fn body(&mut self, head: &Head, mut sink: impl FnMut(&[u8])) -> Result<u64, Failure> {
        match head.framing {
            Framing::None => Ok(0),
            Framing::Length(n) => {
                let mut left = n;
                while left > 0 {
                    if self.buffered().is_empty() {
                        self.fill("the response body").await?;
                    }
                    let take = (self.buffered().len() as u64).min(left) as usize;
                    sink(&self.buffered()[..take]);
                    self.consume(take);
                    left -= take as u64;
                }
                Ok(n)
            }
            Framing::UntilClose => {
                let mut total = 0u64;
                loop {
                    let avail = self.buffered().len();
                    sink(self.buffered());
                    self.consume(avail);
                    total += avail as u64;
                    if self.read_more().await? == 0 {
                        return Ok(total);
                    }
                }
            }
            Framing::Chunked => self.chunked(&mut sink).await,
        }
    }

    /// RFC 9112 §7.1: size line (extensions ignored), data, CRLF; a 0 size ends it, then trailers.
    async fn chunked(&mut self, sink: &mut impl FnMut(&[u8])) -> Result<u64, Failure> {
        let mut total = 0u64;
        loop {
            let line = self.line().await?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| Failure::new("protocol", format!("bad chunk size {line:?}")))?;
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(total);
            }
            let mut left = size;
            while left > 0 {
                if self.buffered().is_empty() {
                    self.fill("a chunk").await?;
                }
                let take = (self.buffered().len() as u64).min(left) as usize;
                sink(&self.buffered()[..take]);
                self.consume(take);
                left -= take as u64;
            }
            total += size;
            if !self.line().await?.is_empty() {
                return Err(Failure::new("protocol", "chunk data not followed by CRLF"));
            }
        }
    }

    async fn line(&mut self) -> Result<String, Failure> {
        loop {
            if let Some(i) = self.buffered().windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffered()[..i]).into_owned();
                self.consume(i + 2);
                return Ok(line);
            }
            if self.buffered().len() > MAX_HEAD {
                return Err(Failure::new("protocol", "chunk line over 64 KiB"));
            }
            self.fill("a chunk line").await?;
        }
    }

    pub async fn body_vec(&mut self, head: &Head) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        self.body(head, |b| out.extend_from_slice(b)).await?;
        Ok(out)
    }

    /// Sends close_notify and shuts the socket; the gate sees a clean end either way.
    pub async fn close(mut self) {
        let _ = async_std::future::timeout(CLOSE_WAIT, self.io.close()).await;
    }
}

fn to_head(res: &httparse::Response<'_, '_>) -> Result<Head, Failure> {
    let status = res
        .code
        .ok_or_else(|| Failure::new("protocol", "no status code"))?;
    let headers: Vec<(String, Vec<u8>)> = res
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let has_token = |name: &str, token: &str| {
        headers.iter().filter(|(n, _)| n == name).any(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let close = has_token("connection", "close");
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if has_token("transfer-encoding", "chunked") {
        Framing::Chunked
    } else if let Some((_, v)) = headers.iter().find(|(n, _)| n == "content-length") {
        let n = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Failure::new("protocol", "bad Content-Length"))?;
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head {
        status,
        framing,
        close,
        headers,
    })
}
