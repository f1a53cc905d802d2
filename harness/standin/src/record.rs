//! Raw request capture, below async-h1.
//!
//! async-h1 hands the handler a parsed `Request` whose URL is already normalised (dot segments
//! removed, `\` turned into `/`, raw UTF-8 re-encoded), and it never exposes the head it read. The
//! gate's tests must see what the gate really sent, byte for byte, and the 2.0 profile must route
//! on the raw path. So every accepted `TcpStream` is wrapped in a [`CaptureStream`]: when capture
//! is *armed*, the bytes read from the socket are kept, first the head up to and including the
//! first `\r\n\r\n`, then the body bytes that follow.
//!
//! Arming: at connection start, and again by the handler once it has read the current request's
//! body completely (`App::handle` does so before routing). The gate never pipelines requests
//! upstream, so after a body has been read the next bytes on the socket are the next head; a
//! pipelining client would see its second head attributed to the first request's body. An
//! upgraded connection (WebSocket) is not re-armed: frames are not requests.
//!
//! The capture is always on (routing needs the raw target); only `--record-requests` keeps the
//! results for `GET /__standin/requests` (E13, explicitly not Duplicati).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_std::net::TcpStream;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::io::{AsyncRead, AsyncWrite};
use serde_json::{json, Value};

// async-h1 refuses heads past 8 KiB; keep a little more so a refused head is still visible.
const MAX_HEAD: usize = 16 * 1024;
// Bodies are kept only to look for the password; test bodies are small.
const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_LOG: usize = 1000;

#[derive(Default)]
struct Capture {
    armed: bool,
    head: Vec<u8>,
    head_done: bool,
    body: Vec<u8>,
}

impl Capture {
    fn feed(&mut self, mut chunk: &[u8]) {
        if !self.armed {
            return;
        }
        if !self.head_done {
            let start = self.head.len().saturating_sub(3);
            let room = MAX_HEAD.saturating_sub(self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..room]);
            match find(&self.head[start..], b"\r\n\r\n") {
                Some(i) => {
                    let end = start + i + 4;
                    let consumed = end - (self.head.len() - room);
                    self.head.truncate(end);
                    self.head_done = true;
                    chunk = &chunk[consumed..];
                }
                None => return,
            }
        }
        let room = MAX_BODY.saturating_sub(self.body.len()).min(chunk.len());
        self.body.extend_from_slice(&chunk[..room]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The bytes of one request as they arrived.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn request_line(&self) -> &[u8] {
        let end = find(&self.head, b"\r\n").unwrap_or(self.head.len());
        &self.head[..end]
    }

    /// The request-target: the bytes between the first and the last space of the request line.
    pub fn target(&self) -> &[u8] {
        let line = self.request_line();
        let first = line.iter().position(|&b| b == b' ');
        let last = line.iter().rposition(|&b| b == b' ');
        match (first, last) {
            (Some(a), Some(b)) if b > a => &line[a + 1..b],
            _ => b"",
        }
    }

    /// Raw values of every header called `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<&[u8]> {
        self.head
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                let (n, v) = line.split_at(colon);
                n.eq_ignore_ascii_case(name.as_bytes())
                    .then(|| trim(&v[1..]))
            })
            .collect()
    }

    fn all_header_names(&self) -> Vec<String> {
        self.head
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                Some(String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase())
            })
            .collect()
    }

    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty()
            && (find(&self.head, needle).is_some() || find(&self.body, needle).is_some())
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map(|i| i + 1)
        .unwrap_or(start);
    &v[start..end.max(start)]
}

/// A TcpStream that records what is read from it while armed. Clones share the capture, as
/// async-h1 clones the stream for its readers and for the upgraded connection.
#[derive(Clone)]
pub struct CaptureStream {
    inner: TcpStream,
    capture: Arc<Mutex<Capture>>,
}

impl CaptureStream {
    pub fn new(inner: TcpStream) -> Self {
        let capture = Capture {
            armed: true,
            ..Capture::default()
        };
        CaptureStream {
            inner,
            capture: Arc::new(Mutex::new(capture)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        // A poisoned capture only means another task panicked mid-record; the bytes are still ours.
        self.capture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands out what was captured since the last arming and arms again if `rearm`.
    pub fn take(&self, rearm: bool) -> Captured {
        let mut c = self.lock();
        let out = Captured {
            head: std::mem::take(&mut c.head),
            body: std::mem::take(&mut c.body),
        };
        c.head_done = false;
        c.armed = rearm;
        out
    }
}

impl CaptureStream {
    /// Stops capturing (an upgraded connection carries frames, not requests).
    pub fn disarm(&self) {
        let mut c = self.lock();
        c.armed = false;
        c.head.clear();
        c.body.clear();
        c.head_done = false;
    }
}

impl AsyncRead for CaptureStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.lock().feed(&buf[..*n]);
        }
        r
    }
}

impl AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Recent requests for `GET /__standin/requests`.
#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<(u64, VecDeque<Value>)>,
}

impl RequestLog {
    pub fn push(&self, peer: &str, c: &Captured, password: Option<&str>) {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let first = |name: &str| c.headers(name).first().map(|v| lossy(v));
        let forwarded: serde_json::Map<String, Value> = c
            .all_header_names()
            .into_iter()
            .filter(|n| n.starts_with("x-forwarded-") || n == "forwarded")
            .filter_map(|n| first(&n).map(|v| (n, json!(v))))
            .collect();
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 += 1;
        let entry = json!({
            "seq": guard.0,
            "peer": peer,
            "request_line": lossy(c.request_line()),
            "request_line_b64": STANDARD.encode(c.request_line()),
            "target": lossy(c.target()),
            "host": first("host"),
            "host_count": c.headers("host").len(),
            "cookies": c.headers("cookie").iter().map(|v| lossy(v)).collect::<Vec<_>>(),
            "upgrade": first("upgrade"),
            "connection": first("connection"),
            "forwarded": forwarded,
            "header_names": c.all_header_names(),
            "head_b64": STANDARD.encode(&c.head),
            "body_len": c.body.len(),
            "password_seen": password.map(|p| c.contains(p.as_bytes())).unwrap_or(false),
        });
        guard.1.push_back(entry);
        while guard.1.len() > MAX_LOG {
            guard.1.pop_front();
        }
    }

    pub fn snapshot(&self) -> Value {
        let guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        json!({ "requests": guard.1.iter().cloned().collect::<Vec<_>>() })
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_split_across_reads_and_body_kept() {
        let mut c = Capture {
            armed: true,
            ..Capture::default()
        };
        c.feed(b"GET /a%2Fb/../c?x=%2B HTTP/1.1\r\nHost: h:8200\r");
        c.feed(b"\nCookie: a=1\r\n\r\nsecret-body");
        let got = Captured {
            head: c.head.clone(),
            body: c.body.clone(),
        };
        assert_eq!(got.request_line(), b"GET /a%2Fb/../c?x=%2B HTTP/1.1");
        assert_eq!(got.target(), b"/a%2Fb/../c?x=%2B");
        assert_eq!(got.headers("HOST"), vec![&b"h:8200"[..]]);
        assert_eq!(got.headers("cookie"), vec![&b"a=1"[..]]);
        assert!(got.contains(b"secret"));
        assert!(!got.contains(b"absent"));
    }

    #[test]
    fn disarmed_capture_records_nothing() {
        let mut c = Capture::default();
        c.feed(b"GET / HTTP/1.1\r\n\r\n");
        assert!(c.head.is_empty() && c.body.is_empty());
    }
}
