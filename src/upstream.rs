//! Connections to Duplicati: opened with a deadline, pooled and reused.
//!
//! A pooled connection is checked before reuse with a non-blocking peek: if Duplicati closed it
//! (Kestrel drops idle keep-alive connections after 130 s) or sent stray bytes, it is dropped. A
//! connection that still dies under the first request is retried by `forward`, for idempotent
//! requests only.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_std::net::TcpStream;

use crate::config::UpstreamUrl;
use crate::http::inbound::Inbound;

/// More idle connections than this are closed instead of kept. A home server's browser tabs need
/// a handful; a benchmark's 64 clients are served by this many being reused.
const MAX_IDLE: usize = 128;
/// Below Kestrel's 130 s keep-alive timeout, so we rarely pick up one it is about to close.
const IDLE_LIFETIME: Duration = Duration::from_secs(60);

pub struct UpstreamConn {
    pub reader: Inbound<TcpStream>,
    pub writer: TcpStream,
    /// Taken from the pool rather than freshly opened: may have died while idle.
    pub reused: bool,
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

pub struct Pool {
    url: UpstreamUrl,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub fn new(url: UpstreamUrl, connect_timeout: Duration) -> Self {
        Pool {
            url,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    /// A pooled connection if a healthy one is idle, else a new one.
    pub async fn get(&self) -> io::Result<UpstreamConn> {
        while let Some(idle) = self.pop() {
            if idle.since.elapsed() < IDLE_LIFETIME && is_quiet(&idle.conn.writer) {
                let mut conn = idle.conn;
                conn.reused = true;
                return Ok(conn);
            }
        }
        self.connect().await
    }

    /// A new connection, bypassing the pool (the retry after a stale pooled one).
    pub async fn connect(&self) -> io::Result<UpstreamConn> {
        let address = (self.url.host.as_str(), self.url.port);
        let stream =
            async_std::io::timeout(self.connect_timeout, TcpStream::connect(address)).await?;
        // Heads are written whole; waiting for an ACK to coalesce them only adds latency.
        stream.set_nodelay(true)?;
        Ok(UpstreamConn {
            reader: Inbound::new(stream.clone()),
            writer: stream,
            reused: false,
        })
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn put(&self, conn: UpstreamConn) {
        if !conn.reader.buffered().is_empty() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Lets go of idle connections that expired or that Duplicati closed, so they do not hold
    /// descriptors in CLOSE-WAIT until the next request.
    pub fn prune(&self) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|i| i.since.elapsed() < IDLE_LIFETIME && is_quiet(&i.conn.writer));
    }

    fn pop(&self) -> Option<Idle> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }
}

/// True if nothing is waiting on the socket: no EOF, no stray bytes, no error.
fn is_quiet(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv on a valid, owned socket into a one-byte buffer; MSG_PEEK consumes nothing.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}
