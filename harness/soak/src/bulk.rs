//! Bulk transfers through `/__standin/bulk` (the stand-in's `--bulk-endpoints`): downloads whose
//! every byte is hashed, uploads generated as they are sent and hashed by the stand-in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use serde_json::Value;

use crate::conn::{Conn, Failure, Framing};
use crate::load::Load;
use crate::pattern;

/// Seeds the looping transfers cycle through; their digests are computed once, up front.
pub const LOOP_SEEDS: [u64; 4] = [11, 12, 13, 14];
pub const BIG_DOWNLOAD_SEED: u64 = 1001;
pub const BIG_UPLOAD_SEED: u64 = 1002;
/// Read buffer and upload block: large enough that per-call costs vanish next to TLS.
const BLOCK: usize = 256 * 1024;
/// After a failed transfer, before the next: no hot loop against a failing gate.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Download,
    Upload,
}

/// One transfer's result: the digest expected and the one seen on the far side.
#[derive(Debug, Clone)]
pub struct Verified {
    pub size: u64,
    pub expected: String,
    pub seen: String,
    pub took: Duration,
}

/// GET `size` bytes of the pattern for `seed`, hashing each byte as it arrives.
async fn download(
    conn: &mut Conn,
    host: &str,
    seed: u64,
    size: u64,
) -> Result<(String, bool), Failure> {
    let req =
        format!("GET /__standin/bulk?size={size}&seed={seed} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.send(req.as_bytes()).await?;
    let head = conn.head().await?;
    if head.status != 200 {
        let body = conn.body_vec(&head).await.unwrap_or_default();
        return Err(Failure::new(
            "status",
            format!(
                "download answered {} ({})",
                head.status,
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    if head.framing != Framing::Length(size) {
        return Err(Failure::new(
            "protocol",
            format!(
                "download framed as {:?}, expected Content-Length {size}",
                head.framing
            ),
        ));
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    let got = conn.body(&head, |b| ctx.update(b)).await?;
    if got != size {
        return Err(Failure::new(
            "length",
            format!("download gave {got} of {size} bytes"),
        ));
    }
    Ok((pattern::hex(ctx.finish().as_ref()), !head.close))
}

/// POST `size` bytes of the pattern, with Content-Length or chunked; the stand-in's digest.
async fn upload(
    conn: &mut Conn,
    host: &str,
    seed: u64,
    size: u64,
    chunked: bool,
) -> Result<(String, bool), Failure> {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    let req = format!(
        "POST /__standin/bulk HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    );
    conn.send(req.as_bytes()).await?;
    let mut block = vec![0u8; BLOCK + 16];
    let mut sent = 0u64;
    while sent < size {
        let n = (size - sent).min(BLOCK as u64) as usize;
        if chunked {
            let line = format!("{n:x}\r\n");
            let start = line.len();
            block[..start].copy_from_slice(line.as_bytes());
            pattern::fill(seed, sent, &mut block[start..start + n]);
            block[start + n..start + n + 2].copy_from_slice(b"\r\n");
            conn.send(&block[..start + n + 2]).await?;
        } else {
            pattern::fill(seed, sent, &mut block[..n]);
            conn.send(&block[..n]).await?;
        }
        sent += n as u64;
    }
    if chunked {
        conn.send(b"0\r\n\r\n").await?;
    }
    let head = conn.head().await?;
    let body = conn.body_vec(&head).await?;
    if head.status != 200 {
        return Err(Failure::new(
            "status",
            format!(
                "upload answered {} ({})",
                head.status,
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::new("protocol", format!("upload answer not JSON: {e}")))?;
    let length = answer.get("Length").and_then(Value::as_u64);
    if length != Some(size) {
        return Err(Failure::new(
            "length",
            format!("the stand-in received {length:?} of {size} bytes"),
        ));
    }
    let sha = answer
        .get("Sha256")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::new("protocol", "upload answer has no Sha256"))?;
    Ok((sha.to_string(), !head.close))
}

/// One verified transfer on `conn` (opened if None; left None if it cannot be reused).
async fn transfer(
    load: &Load,
    conn: &mut Option<Conn>,
    dir: Direction,
    seed: u64,
    size: u64,
    chunked: bool,
) -> Result<Verified, Failure> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => load.connect(BLOCK).await?,
    };
    let started = Instant::now();
    let host = &load.client.host;
    let (seen, keep) = match dir {
        Direction::Download => download(&mut c, host, seed, size).await?,
        Direction::Upload => upload(&mut c, host, seed, size, chunked).await?,
    };
    let took = started.elapsed();
    if keep {
        *conn = Some(c);
    } else {
        c.close().await;
    }
    Ok(Verified {
        size,
        expected: load.digest(seed, size).to_string(),
        seen,
        took,
    })
}

impl Verified {
    fn check(self, dir: Direction) -> Result<Verified, Failure> {
        if self.seen == self.expected {
            return Ok(self);
        }
        Err(Failure::new(
            "sha256",
            format!(
                "{dir:?} of {} bytes: expected {}, got {}",
                self.size, self.expected, self.seen
            ),
        ))
    }
}

pub fn loop_kind(dir: Direction) -> &'static str {
    match dir {
        Direction::Download => "bulk download",
        Direction::Upload => "bulk upload",
    }
}

/// Transfers of --bulk-mib back to back on one keep-alive connection until the load ends.
/// Uploads alternate between Content-Length and chunked.
pub async fn bulk_loop(load: Arc<Load>, dir: Direction, worker: usize) {
    let kind = loop_kind(dir);
    let mut conn = None;
    let mut n = worker;
    while !load.load_over() {
        let seed = LOOP_SEEDS[n % LOOP_SEEDS.len()];
        let chunked = n % 2 == 1;
        n += 1;
        let size = load.config.bulk_size;
        match transfer(&load, &mut conn, dir, seed, size, chunked)
            .await
            .and_then(|v| v.check(dir))
        {
            Ok(v) => {
                load.stats.ok(kind);
                load.stats.transfer(kind, v.size, v.took);
            }
            Err(f) => {
                load.stats.error(kind, &f);
                conn = None;
                load.pause(RETRY_PAUSE).await;
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// The one large transfer whose digests the report prints (also when they differ); a failure is
/// kept, not retried.
pub async fn big(load: Arc<Load>, dir: Direction) -> Result<Verified, Failure> {
    let seed = match dir {
        Direction::Download => BIG_DOWNLOAD_SEED,
        Direction::Upload => BIG_UPLOAD_SEED,
    };
    let kind = match dir {
        Direction::Download => "big download",
        Direction::Upload => "big upload",
    };
    let mut conn = None;
    // Chunked for the big upload: the framing a streaming browser upload without a known size uses.
    let result = transfer(&load, &mut conn, dir, seed, load.config.big_size, true).await;
    if let Some(c) = conn {
        c.close().await;
    }
    match result.clone().and_then(|v| v.check(dir)) {
        Ok(v) => {
            load.stats.ok(kind);
            load.stats.transfer(kind, v.size, v.took);
        }
        Err(f) => load.stats.error(kind, &f),
    }
    result
}
