//! The stand-in's bulk byte pattern (harness/standin/src/bulk.rs), made again here so every byte
//! of a download can be checked and every upload made without holding it in memory.
//!
//! Word `i` of the stream for `seed` is SplitMix64's output function applied to
//! `seed + (i + 1) * 0x9E3779B97F4A7C15`; the bytes are the words in little-endian order, the last
//! one cut short. Both crates pin the same test vector, so neither can drift alone.

use aws_lc_rs::digest;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn word(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the pattern from byte `offset` on; `offset` must be a multiple of 8 (every
/// caller advances in whole blocks).
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    debug_assert_eq!(offset % 8, 0);
    let first = offset / 8;
    for (k, chunk) in out.chunks_mut(8).enumerate() {
        let w = word(seed, first + k as u64).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// SHA-256 of the first `size` bytes of the pattern. CPU-bound: call from a blocking thread.
pub fn sha256(seed: u64, size: u64) -> String {
    const BLOCK: u64 = 1 << 20;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; BLOCK as usize];
    let mut done = 0;
    while done < size {
        let n = (size - done).min(BLOCK);
        fill(seed, done, &mut buf[..n as usize]);
        ctx.update(&buf[..n as usize]);
        done += n;
    }
    hex(ctx.finish().as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same vector as the stand-in's `bulk::tests::pattern_vector`.
    #[test]
    fn pattern_vector() {
        let mut out = [0u8; 16];
        fill(1, 0, &mut out);
        assert_eq!(hex(&out), "c15c0289ec2d0a9167ec8e65a18debbe");
    }

    #[test]
    fn digest_of_a_short_tail() {
        let mut all = vec![0u8; 21];
        fill(3, 0, &mut all);
        let want = hex(digest::digest(&digest::SHA256, &all).as_ref());
        assert_eq!(sha256(3, 21), want);
    }

    /// What `curl .../__standin/bulk?size=10000000&seed=3 | sha256sum` printed against the stand-in.
    #[test]
    fn digest_matches_the_stand_in() {
        assert_eq!(
            sha256(3, 10_000_000),
            "3ba5ccfcc61a1eb299080064e77b5941d8c4ef792449cc21c737cd005b686be6"
        );
    }
}
