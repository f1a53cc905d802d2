//! `/__standin/bulk`: bulk bytes for the soak test (harness/soak). Not Duplicati behaviour: its
//! real downloads (restore, `/api/v1/backup/{id}/export`) are small or need real backup data, and
//! a soak needs gigabytes whose every byte can be checked on the far side.
//!
//! Only with `--bulk-endpoints`: a stand-in that can be made to stream 16 GiB must not do so by
//! accident in the end-to-end tests.
//!
//! - `GET /__standin/bulk?size=N&seed=S` answers N bytes of [`pattern`] with `Content-Length: N`,
//!   made as they are sent, never held in memory.
//! - `POST /__standin/bulk` reads the body as it streams in (Content-Length or chunked) and answers
//!   `{"Length":<bytes>,"Sha256":"<hex>"}`.
//!
//! Both bypass `App::handle`'s whole-body read: a 1 GiB upload must not become a 1 GiB `Vec`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lc_rs::digest;
use futures::io::{AsyncBufRead, AsyncRead, AsyncReadExt};
use http_types::{Body, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::reply;

pub const PATH: &str = "/__standin/bulk";

/// A typo in `size` should not start a stream that never ends.
const MAX_SIZE: u64 = 16 << 30;
/// Bytes made per fill: large enough that the per-call overhead vanishes, small enough that a few
/// hundred parallel streams stay a few MiB.
const BLOCK: usize = 64 * 1024;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Word `i` of the pattern for `seed`: SplitMix64's output function applied to
/// `seed + (i + 1) * GOLDEN`. Addressable by position, so any block can be made on its own; the
/// byte stream is the words in little-endian order, the last one cut short. The soak's copy of
/// this function is pinned to the same test vector as [`tests::pattern_vector`].
pub fn pattern_word(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the pattern bytes starting at `offset`, which must be a multiple of 8.
fn fill_pattern(seed: u64, offset: u64, out: &mut [u8]) {
    debug_assert_eq!(offset % 8, 0);
    let first = offset / 8;
    for (k, chunk) in out.chunks_mut(8).enumerate() {
        let word = pattern_word(seed, first + k as u64).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// The pattern as a body reader: `size` bytes, one block at a time.
struct Pattern {
    seed: u64,
    size: u64,
    /// Bytes of the pattern made so far (always a multiple of 8 until the end).
    made: u64,
    block: Vec<u8>,
    pos: usize,
    len: usize,
}

impl Pattern {
    fn new(seed: u64, size: u64) -> Self {
        Pattern {
            seed,
            size,
            made: 0,
            block: vec![0; BLOCK],
            pos: 0,
            len: 0,
        }
    }
}

impl AsyncBufRead for Pattern {
    fn poll_fill_buf(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos == this.len && this.made < this.size {
            let n = (this.size - this.made).min(BLOCK as u64) as usize;
            fill_pattern(this.seed, this.made, &mut this.block[..n]);
            this.made += n as u64;
            this.pos = 0;
            this.len = n;
        }
        Poll::Ready(Ok(&this.block[this.pos..this.len]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.len);
    }
}

impl AsyncRead for Pattern {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(avail)) => {
                let n = avail.len().min(buf.len());
                buf[..n].copy_from_slice(&avail[..n]);
                n
            }
            other => return other.map_ok(|_| 0),
        };
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

/// Serves `/__standin/bulk`; `req` still holds its unread body.
pub async fn serve(mut req: Request) -> Response {
    match req.method() {
        Method::Get => download(&req),
        Method::Post => upload(&mut req).await,
        _ => reply::empty(405),
    }
}

fn query_u64(req: &Request, key: &str) -> Option<Result<u64, ()>> {
    req.url()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.parse().map_err(|_| ()))
}

fn download(req: &Request) -> Response {
    let size = match query_u64(req, "size") {
        Some(Ok(n)) if n <= MAX_SIZE => n,
        _ => return reply::error(400, "size=N (bytes, at most 16 GiB) is required"),
    };
    let seed = match query_u64(req, "seed") {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(())) => return reply::error(400, "seed must be an unsigned integer"),
    };
    let mut r = Response::new(StatusCode::Ok);
    r.set_body(Body::from_reader(
        Pattern::new(seed, size),
        Some(size as usize),
    ));
    r.insert_header("content-type", "application/octet-stream");
    r
}

async fn upload(req: &mut Request) -> Response {
    let mut body = req.take_body();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; BLOCK];
    let mut length: u64 = 0;
    loop {
        match body.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                ctx.update(&buf[..n]);
                length += n as u64;
            }
            // A cut or malformed body: the client hears it as 400 if it is still listening.
            Err(e) => return reply::error(400, &format!("body ended early: {e}")),
        }
    }
    reply::json(
        200,
        &json!({ "Length": length, "Sha256": hex(ctx.finish().as_ref()) }),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::AsyncReadExt;

    /// Shared with harness/soak's generator: if either side changes, both tests fail.
    #[test]
    fn pattern_vector() {
        let mut out = [0u8; 16];
        fill_pattern(1, 0, &mut out);
        // Little-endian words of SplitMix64 seeded with 1 (checked against a Python transcription).
        assert_eq!(hex(&out), "c15c0289ec2d0a9167ec8e65a18debbe");
    }

    #[test]
    fn reader_matches_pattern_across_blocks_and_short_tail() {
        let size = 2 * BLOCK as u64 + 5;
        let mut got = Vec::new();
        futures::executor::block_on(Pattern::new(7, size).read_to_end(&mut got))
            .unwrap_or_else(|e| panic!("reading the pattern failed: {e}"));
        let mut want = vec![0u8; size as usize];
        fill_pattern(7, 0, &mut want);
        assert_eq!(got.len() as u64, size);
        assert!(got == want, "pattern differs from fill_pattern");
        // Position-addressable: the second block made alone equals the same slice of the whole.
        let mut second = vec![0u8; BLOCK];
        fill_pattern(7, BLOCK as u64, &mut second);
        assert!(second[..] == want[BLOCK..2 * BLOCK]);
    }
}
