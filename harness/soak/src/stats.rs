//! Tallies shared by every load task: successes by kind, failures by kind with the first few
//! messages, small-call latencies, bulk bytes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::conn::Failure;

/// Enough first messages to see a pattern without flooding the report.
const FIRST_ERRORS: usize = 10;

#[derive(Default)]
pub struct Stats {
    ok: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    first_errors: Mutex<Vec<String>>,
    latency_us: Mutex<Vec<u32>>,
    bulk: Mutex<BTreeMap<&'static str, Transfer>>,
    pub ws_messages: AtomicU64,
    /// Keep-alive connections the gate ended with `Connection: close` (opened again, not errors).
    pub reconnects: AtomicU64,
}

#[derive(Default, Clone, Copy)]
pub struct Transfer {
    pub count: u64,
    pub bytes: u64,
    pub busy: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A task that panicked mid-update leaves a tally that is still worth reporting.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stats {
    pub fn ok(&self, kind: &'static str) {
        *lock(&self.ok).entry(kind).or_default() += 1;
    }

    pub fn error(&self, what: &str, f: &Failure) {
        *lock(&self.errors)
            .entry(format!("{what}/{}", f.kind))
            .or_default() += 1;
        let mut first = lock(&self.first_errors);
        if first.len() < FIRST_ERRORS {
            first.push(format!("[{what}] {f}"));
        }
    }

    pub fn latency(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        lock(&self.latency_us).push(us);
    }

    pub fn transfer(&self, kind: &'static str, bytes: u64, busy: Duration) {
        let mut all = lock(&self.bulk);
        let t = all.entry(kind).or_default();
        t.count += 1;
        t.bytes += bytes;
        t.busy += busy;
    }

    pub fn oks(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.ok).clone()
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    pub fn error_total(&self) -> u64 {
        lock(&self.errors).values().sum()
    }

    pub fn first_errors(&self) -> Vec<String> {
        lock(&self.first_errors).clone()
    }

    pub fn transfers(&self) -> BTreeMap<&'static str, Transfer> {
        lock(&self.bulk).clone()
    }

    /// (p50, p99, max, samples) of the small calls.
    pub fn percentiles(&self) -> Option<(Duration, Duration, Duration, usize)> {
        let mut v = lock(&self.latency_us).clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            Duration::from_micros(u64::from(v[i]))
        };
        Some((at(0.50), at(0.99), at(1.0), v.len()))
    }

    pub fn count_ws_message(&self) {
        self.ws_messages.fetch_add(1, Ordering::Relaxed);
    }
}

/// A small, seeded generator for think times: no need for cryptographic randomness.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let s = Stats::default();
        for ms in 1..=100 {
            s.latency(Duration::from_millis(ms));
        }
        let (p50, p99, max, n) = s.percentiles().unwrap_or_default();
        assert_eq!(
            (p50, p99, max, n),
            (
                Duration::from_millis(50),
                Duration::from_millis(99),
                Duration::from_millis(100),
                100
            )
        );
    }
}
