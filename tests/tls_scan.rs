//! testssl.sh (Debian's package) against the real gate: no finding at MEDIUM or above.
//!
//! The gate serves a certificate from a test CA that testssl is told to trust (`--add-ca`), so
//! what is judged is the gate's TLS configuration. One certificate finding is expected and
//! named: a private test CA publishes no CRL or OCSP URL (`cert_revocation`); with a public
//! certificate that comes from the CA, not from the gate.
//! Run with `just tls-scan` (about two minutes); it fails, never skips, without testssl.

mod common;

use std::process::Command;

use common::{Gate, TempDir, Upstream};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Findings that describe the test PKI rather than the gate (see the module doc).
const EXPECTED_FOR_A_TEST_CA: [&str; 1] = ["cert_revocation"];

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "CRITICAL" => 4,
        "HIGH" => 3,
        "MEDIUM" => 2,
        "LOW" => 1,
        _ => 0,
    }
}

/// A CA and a `localhost` leaf it signed, as PEM files in `dir`: (ca, cert, key).
fn test_pki(dir: &TempDir) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "duplicati-gate scan CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(90);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

#[test]
fn testssl_finds_nothing_at_medium_or_above() {
    let dir = TempDir::new("tls-scan");
    let (ca, cert, key) = test_pki(&dir);
    let upstream = Upstream::ok();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--cert",
        &cert,
        "--key",
        &key,
    ]
    .map(String::from);
    let gate = Gate::spawn(&args);
    let csv = dir.path().join("testssl.csv");
    let output = Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--ip",
            "127.0.0.1",
            "--add-ca",
            &ca,
            "--csvfile",
        ])
        .arg(&csv)
        .arg(format!("localhost:{}", gate.addr.port()))
        .output()
        .expect("testssl is needed: apt-get install testssl.sh");
    let text = std::fs::read_to_string(&csv).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no results ({e}); its output:\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.trim_matches('"').split("\",\"").collect();
        let [id, _, _, severity, finding, ..] = fields[..] else {
            continue;
        };
        if severity_rank(severity) == 0 {
            continue;
        }
        summary.push(format!("{severity:<8} {id}: {finding}"));
        if severity_rank(severity) >= 2 && !EXPECTED_FOR_A_TEST_CA.contains(&id) {
            failures.push(format!("{severity} {id}: {finding}"));
        }
    }
    let checks = text.lines().count().saturating_sub(1);
    println!(
        "testssl ran {checks} checks; findings at LOW or above:\n{}",
        summary.join("\n")
    );
    assert!(checks > 50, "testssl ran only {checks} checks:\n{text}");
    assert!(
        failures.is_empty(),
        "findings at MEDIUM or above:\n{}",
        failures.join("\n")
    );
}
