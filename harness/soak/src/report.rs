//! The one report a run prints, and its verdict.

use std::fmt::Write;

use crate::bulk::{self, Direction};
use crate::probe::Fds;
use crate::run::Outcome;

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

fn fds(f: &Fds) -> String {
    format!(
        "{} (client {}, upstream {}, listening {}, other {})",
        f.total, f.client, f.upstream, f.listening, f.other
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The report text and the reasons the run failed (none: passed).
pub fn render(o: &Outcome, total_secs: f64) -> (String, Vec<String>) {
    let c = &o.load.config;
    let s = &o.load.stats;
    let mut fail = Vec::new();
    let mut r = String::new();
    let _ = writeln!(r, "== duplicati-gate soak report ==");
    let ramp = o
        .ramp_secs
        .map(|t| format!("all connections up after {t:.1} s"))
        .unwrap_or_else(|| "NOT all connections came up".into());
    let _ = writeln!(
        r,
        "load: {:.0} s ({ramp}); {} keep-alive connections (think 0-{} ms), {} WebSockets, \
         {} download + {} upload loops of {} MiB, one {} MiB download and upload; run {:.0} s in all; \
         open-file limit {}",
        o.load_secs,
        c.connections,
        c.think_max.as_millis(),
        c.websockets,
        c.downloads,
        c.uploads,
        c.bulk_size >> 20,
        c.big_size >> 20,
        total_secs,
        o.nofile
    );
    let _ = writeln!(r, "requests completed, by kind:");
    for (kind, n) in s.oks() {
        let _ = writeln!(r, "  {kind:<28} {n:>9}");
    }
    let _ = writeln!(
        r,
        "  {:<28} {:>9}",
        "websocket messages read",
        s.ws_messages.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(
        r,
        "  {:<28} {:>9}",
        "reconnects (Connection: close)",
        s.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    );
    match s.percentiles() {
        Some((p50, p99, max, n)) => {
            let _ = writeln!(
                r,
                "small-call latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({n} calls)",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
        }
        None => {
            let _ = writeln!(r, "small-call latency: no calls completed");
        }
    }
    let transfers = s.transfers();
    let mut line = String::from("bulk throughput (MB = 10^6 bytes):");
    let mut all_bytes = 0;
    for (kind, t) in &transfers {
        all_bytes += t.bytes;
        let _ = write!(
            line,
            " {kind} {} x, {:.1} GiB, {:.0} MB/s per transfer;",
            t.count,
            t.bytes as f64 / (1u64 << 30) as f64,
            mb_per_s(t.bytes, t.busy.as_secs_f64())
        );
    }
    let _ = writeln!(r, "{line}");
    let _ = writeln!(
        r,
        "  all bulk bytes {:.1} GiB = {:.0} MB/s averaged over the load",
        all_bytes as f64 / (1u64 << 30) as f64,
        mb_per_s(all_bytes, o.load_secs)
    );
    for dir in [Direction::Download, Direction::Upload] {
        let (seed, label, far) = match dir {
            Direction::Download => (bulk::BIG_DOWNLOAD_SEED, "download", "received"),
            Direction::Upload => (bulk::BIG_UPLOAD_SEED, "upload (chunked)", "stand-in got"),
        };
        let title = format!("{} MiB {label}, seed {seed}", c.big_size >> 20);
        match o.big.iter().find(|(d, _, _)| *d == dir) {
            Some((_, Ok(v), w)) => {
                let same = v.seen == v.expected;
                let _ = writeln!(
                    r,
                    "{title}: {} bytes in {:.1} s ({:.0} MB/s), from {:.1} s to {:.1} s of the {:.0} s load",
                    v.size,
                    v.took.as_secs_f64(),
                    mb_per_s(v.size, v.took.as_secs_f64()),
                    w.from,
                    w.to,
                    o.load_secs
                );
                let _ = writeln!(r, "  expected sha256 {}", v.expected);
                let _ = writeln!(
                    r,
                    "  {far:<13}sha256 {}  {}",
                    v.seen,
                    if same { "MATCH" } else { "MISMATCH" }
                );
                if !same {
                    fail.push(format!("the {label} digest differs"));
                }
            }
            Some((_, Err(f), _)) => {
                let _ = writeln!(r, "{title}: FAILED: {f}");
                fail.push(format!("the big {label} failed"));
            }
            None => {
                let _ = writeln!(r, "{title}: did not finish");
                fail.push(format!("the big {label} did not finish"));
            }
        }
    }
    let peak_rss = o.peaks.rss_kib.max(o.after.hwm_kib);
    let _ = writeln!(
        r,
        "gate memory: RSS before {}, peak {} (VmHWM), after {}",
        mib(o.before.rss_kib),
        mib(peak_rss),
        mib(o.after.rss_kib)
    );
    let (b, a) = (&o.before.fds, &o.after.fds);
    let _ = writeln!(r, "gate fds before: {}", fds(b));
    let _ = writeln!(
        r,
        "gate fds peak:   {} (client {}, upstream {}; {} samples, 1/s)",
        o.peaks.fds, o.peaks.client_fds, o.peaks.upstream_fds, o.peaks.samples
    );
    let _ = writeln!(r, "gate fds after:  {}", fds(a));
    let client_ok = a.client <= b.client;
    let other_ok = a.other <= b.other && a.listening == b.listening;
    let upstream_ok = a.upstream <= b.upstream;
    let _ = writeln!(
        r,
        "  client sockets {} -> {} (must return: {}); other fds {} -> {} (must return: {}); \
         upstream sockets {} -> {} (must return once the pool's idle connections expire: {})",
        b.client,
        a.client,
        ok(client_ok),
        b.other,
        a.other,
        ok(other_ok),
        b.upstream,
        a.upstream,
        ok(upstream_ok)
    );
    if !(client_ok && other_ok && upstream_ok && o.settled) {
        fail.push("gate descriptors did not return to the baseline".into());
    }
    let _ = writeln!(
        r,
        "gate: {}; {}. stand-in: {}",
        if o.gate_alive {
            "alive at the end"
        } else {
            "DIED during the run"
        },
        o.gate_stop,
        o.standin_stop
    );
    if !o.gate_alive {
        fail.push("the gate exited during the run".into());
    }
    if o.stuck_tasks > 0 {
        fail.push(format!("{} load tasks never finished", o.stuck_tasks));
    }
    let errors = s.error_total();
    let _ = writeln!(r, "errors: {errors}");
    for (kind, n) in s.errors() {
        let _ = writeln!(r, "  {kind:<40} {n:>7}");
    }
    for m in s.first_errors() {
        let _ = writeln!(r, "  first: {m}");
    }
    if errors > 0 {
        fail.push(format!("{errors} errors"));
    }
    let _ = writeln!(
        r,
        "verdict: {}",
        if fail.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", fail.join("; "))
        }
    );
    (r, fail)
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "NO"
    }
}
