//! Packet capture on the host (libpcap through the `pcap` crate), TCP reassembly per flow, and a
//! search of the reassembled bytes for secrets in every encoding they could travel in.
//!
//! Single packets are not enough: a secret can straddle two segments, and a retransmission can
//! repeat half of it. So every direction of every connection is rebuilt in sequence order first.

mod capture;
mod secret;
mod trace;

pub use capture::Capture;
pub use secret::{Finding, Secret};
pub use trace::{Flow, Trace};

use crate::error::Result;

/// The verdict on the client-facing leg: no secret in any form, and every byte to and from the
/// TLS port is a TLS record. Returns a summary of what was checked.
pub fn check_outside_leg(trace: &Trace, secrets: &[Secret], tls_port: u16) -> Result<String> {
    trace.completeness()?;
    let mut problems = Vec::new();
    let found = trace.search(secrets);
    for f in &found {
        problems.push(format!("LEAK: {f}"));
    }
    let mut tls_flows = 0;
    let mut records = 0;
    for flow in trace.flows_on_port(tls_port) {
        if flow.bytes.is_empty() {
            continue;
        }
        tls_flows += 1;
        match tls_records(&flow.bytes) {
            Ok(n) => records += n,
            Err(e) => problems.push(format!("NOT TLS: flow {flow}: {e}")),
        }
    }
    if tls_flows == 0 {
        problems.push(format!(
            "no traffic on port {tls_port} was captured at all, so its absence of secrets proves nothing"
        ));
    }
    crate::ensure!(
        problems.is_empty(),
        "the client-facing leg on {} fails the check:\n  {}\n{}",
        trace.iface,
        problems.join("\n  "),
        trace.summary()
    );
    Ok(format!(
        "{}: {} flows, {tls_flows} on port {tls_port} with {records} TLS records, {} secrets x {} forms absent",
        trace.iface,
        trace.flows.len(),
        secrets.len(),
        secrets.first().map_or(0, |s| s.forms().len())
    ))
}

/// The positive control on the plaintext hop: every secret must be found. If the capture there
/// cannot see the password, the outside check could not have seen one either.
pub fn check_backend_leg(trace: &Trace, secrets: &[Secret]) -> Result<String> {
    let found = trace.search(secrets);
    let missing: Vec<&str> = secrets
        .iter()
        .filter(|s| !found.iter().any(|f| f.secret == s.label))
        .map(|s| s.label.as_str())
        .collect();
    crate::ensure!(
        missing.is_empty(),
        "positive control failed: {} never seen on the plaintext hop {}, so the capture proves \
         nothing\n{}",
        missing.join(", "),
        trace.iface,
        trace.summary()
    );
    Ok(format!(
        "{}: positive control holds ({} sightings of {} secrets, e.g. {})",
        trace.iface,
        found.len(),
        secrets.len(),
        found.first().map(ToString::to_string).unwrap_or_default()
    ))
}

/// Walks `bytes` as a sequence of TLS records (RFC 8446 §5.1) and returns how many there were.
/// Fails on the first byte that cannot be a record header: plaintext HTTP fails at byte 0.
pub fn tls_records(bytes: &[u8]) -> Result<usize> {
    crate::ensure!(!bytes.is_empty(), "no bytes at all");
    crate::ensure!(
        bytes[0] == 0x16,
        "stream starts with {:?}, not a TLS handshake record (0x16)",
        String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
    );
    let mut at = 0;
    let mut count = 0;
    while at < bytes.len() {
        crate::ensure!(
            bytes.len() - at >= 5,
            "truncated TLS record header at byte {at}"
        );
        let (kind, major, minor) = (bytes[at], bytes[at + 1], bytes[at + 2]);
        let len = usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]));
        crate::ensure!(
            matches!(kind, 20..=23)
                && major == 3
                && (1..=4).contains(&minor)
                && len <= 16_384 + 2048,
            "not a TLS record at byte {at}: {:02x?}",
            &bytes[at..(at + 8).min(bytes.len())]
        );
        at += 5 + len;
        count += 1;
    }
    crate::ensure!(
        at == bytes.len(),
        "last TLS record runs past the end of the stream"
    );
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tls_records_accepts_tls_and_rejects_http() {
        let mut tls = vec![0x16, 3, 1, 0, 2, 1, 0];
        tls.extend_from_slice(&[0x17, 3, 3, 0, 1, 0xaa]);
        assert_eq!(tls_records(&tls).unwrap(), 2);
        assert!(tls_records(b"POST /api/v1/auth/login HTTP/1.1\r\n").is_err());
    }
}
