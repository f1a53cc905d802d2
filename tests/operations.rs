//! Running the gate: certificates (PEM, PKCS#12, self-signed), TLS versions, the command line,
//! `check`, `gen-cert`, the access log and a graceful stop.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_gate, Client, Gate, Next, TempDir, TestCert, Upstream};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

fn fingerprint_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("SHA-256 fingerprint"))
        .unwrap_or_else(|| panic!("no fingerprint in {stderr}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_default_self_signed_certificate_is_made_once_and_reused() {
    let upstream = Upstream::ok();
    let state = TempDir::new("state");
    let args = |state: &TempDir| {
        vec![
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            upstream.url(),
            "--state-dir".into(),
            state.path().display().to_string(),
        ]
    };
    let first = Gate::spawn(&args(&state));
    let made = first.wait_for_stderr("fingerprint");
    assert!(
        made.contains("made a self-signed certificate for"),
        "{made}"
    );
    let key = state.path().join("self-signed-key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read(state.path().join("self-signed-cert.pem")).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(
        fingerprint_line(&made),
        duplicati_gate::tls::fingerprint(&der)
    );
    // It covers localhost, so a client trusting it can connect by that name.
    let mut client = Client::connect(first.addr, &der);
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().status, 200);
    drop(first);

    let second = Gate::spawn(&args(&state));
    let reused = second.wait_for_stderr("fingerprint");
    assert!(
        reused.contains("reusing a self-signed certificate"),
        "{reused}"
    );
    assert_eq!(fingerprint_line(&reused), fingerprint_line(&made));
}

/// Bundles `cert` into a PKCS#12 file with the openssl command line, as users make them.
fn openssl_pkcs12(cert: &TestCert, legacy: bool, password: &str) -> std::path::PathBuf {
    let out = cert
        .dir
        .path()
        .join(if legacy { "legacy.p12" } else { "modern.p12" });
    let mut command = Command::new("openssl");
    command
        .args(["pkcs12", "-export", "-in"])
        .arg(&cert.cert)
        .arg("-inkey")
        .arg(&cert.key)
        .arg("-out")
        .arg(&out)
        .args(["-passout", &format!("pass:{password}")]);
    if legacy {
        command.arg("-legacy");
    }
    let status = command
        .status()
        .expect("openssl (apt package openssl) is needed for this test");
    assert!(status.success(), "openssl pkcs12 -export failed");
    out
}

#[test]
fn pkcs12_bundles_load_in_openssl_3_default_and_legacy_encodings() {
    let upstream = Upstream::ok();
    for legacy in [false, true] {
        let cert = TestCert::new();
        let bundle = openssl_pkcs12(&cert, legacy, "s3cret pass");
        let password_file = cert.dir.path().join("password");
        std::fs::write(&password_file, "s3cret pass\n").unwrap();
        let der = cert.der.clone();
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url(),
            "--pkcs12",
            bundle.to_str().unwrap(),
            "--pkcs12-password-file",
            password_file.to_str().unwrap(),
        ]
        .map(String::from);
        let gate = Gate::spawn(&args);
        let mut client = Client::connect(gate.addr, &der);
        client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(client.response().status, 200, "legacy={legacy}");

        std::fs::write(&password_file, "wrong\n").unwrap();
        let (code, _, stderr) = run_gate(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 2);
        assert!(
            stderr.contains("PKCS#12 bundle") && stderr.contains("--pkcs12-password-file"),
            "{stderr}"
        );
    }
}

#[test]
fn tls_1_3_with_post_quantum_key_exchange_and_tls_1_2_both_work() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().status, 200);
    let (_, session) = client.stream.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        session.negotiated_key_exchange_group().map(|g| g.name()),
        Some(rustls::NamedGroup::X25519MLKEM768)
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(gate.cert().der.clone()).unwrap();
    let tls12_only = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut client = Client::connect_with(gate.addr, Arc::new(tls12_only));
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().status, 200);
    assert_eq!(
        client.stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[test]
fn bad_flags_and_files_exit_2_naming_the_fix() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let (cert_path, key_path) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve", "--listen", "8443"], "write it as IP:PORT"),
        (
            vec!["serve", "--upstream", "https://nas:8200"],
            "point the gate at its plain HTTP port",
        ),
        (
            vec!["serve", "--cert", cert_path],
            "pass both --cert FILE and --key FILE",
        ),
        (
            vec![
                "serve",
                "--cert",
                "/nonexistent/cert.pem",
                "--key",
                key_path,
            ],
            "cannot read certificate /nonexistent/cert.pem",
        ),
        (
            vec!["serve", "--cert", key_path, "--key", key_path],
            "no certificate found",
        ),
        (
            vec![
                "serve",
                "--cert",
                cert_path,
                "--key",
                other.key.to_str().unwrap(),
            ],
            "does not belong to the certificate",
        ),
        (
            vec!["serve", "--listen=0.0.0.0:8443"],
            "Unrecognized argument",
        ),
        (vec!["serve", "--frobnicate"], "Unrecognized argument"),
        (vec!["gen-cert"], "--host"),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = run_gate(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
    let (code, stdout, _) = run_gate(&["serve", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--upstream") && stdout.contains("--redirect-http"));
}

#[test]
fn check_reports_certificate_key_and_upstream_and_touches_nothing() {
    let healthy = Upstream::start(|ex| {
        ex.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nHealthy",
        );
        Next::Close
    });
    let cert = TestCert::new();
    let (cert_path, key_path) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let (code, stdout, _) = run_gate(&[
        "check",
        "--upstream",
        &healthy.url(),
        "--cert",
        cert_path,
        "--key",
        key_path,
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("ok       certificate and private key readable and matching"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok       certificate valid until 20"),
        "{stdout}"
    );
    assert!(stdout.contains("(GET /health: 200 Healthy)"), "{stdout}");

    std::fs::set_permissions(&cert.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, _) = run_gate(&[
        "check",
        "--upstream",
        &healthy.url(),
        "--cert",
        cert_path,
        "--key",
        key_path,
    ]);
    assert_eq!(code, 0, "a loose key is a warning: {stdout}");
    assert!(
        stdout.contains(&format!(
            "warning  private key {key_path} is readable by group or others"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("chmod 400 {key_path}")),
        "{stdout}"
    );

    let dead = common::dead_port();
    let (code, stdout, _) = run_gate(&[
        "check",
        "--upstream",
        &format!("http://{dead}"),
        "--cert",
        cert_path,
        "--key",
        key_path,
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "error    Duplicati is not answering at http://{dead}"
        )),
        "{stdout}"
    );

    let state = TempDir::new("check-state");
    let (_, stdout, _) = run_gate(&[
        "check",
        "--upstream",
        &healthy.url(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("serve will make a self-signed one"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "check must not write anything"
    );
}

#[test]
fn gen_cert_writes_a_certificate_and_a_0600_key() {
    let out = TempDir::new("gen-cert");
    let (code, stdout, stderr) = run_gate(&[
        "gen-cert",
        "--host",
        "backup.lan",
        "--host",
        "192.0.2.10",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("SHA-256 fingerprint:"));
    let key = out.path().join("key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read(out.path().join("cert.pem")).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = format!(
        "{:?}",
        parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
    );
    assert!(
        sans.contains("backup.lan") && sans.contains("192.0.2.10")
            || sans.contains("[192, 0, 2, 10]"),
        "{sans}"
    );
}

#[test]
fn the_access_log_has_one_line_per_request_without_secrets() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(
        b"POST /api/v1/auth/login?next=%2Fsecret-path HTTP/1.1\r\nHost: localhost\r\nCookie: RefreshToken_0=cookie-secret\r\n\
          Authorization: Bearer header-secret\r\nContent-Length: 38\r\n\r\n{\"Password\":\"body-secret-pw\",\"X\":true}",
    );
    assert_eq!(client.response().status, 200);
    let log = gate.wait_for_stderr("/api/v1/auth/login");
    let line = log
        .lines()
        .find(|l| l.contains("/api/v1/auth/login"))
        .unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        &fields[..5],
        ["127.0.0.1", "POST", "/api/v1/auth/login?next=…", "200", "2"],
        "{line}"
    );
    assert!(fields[5].ends_with("ms"));
    for secret in [
        "secret-path",
        "cookie-secret",
        "header-secret",
        "body-secret-pw",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log: {log}");
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let upstream = Upstream::start(|ex| {
        std::thread::sleep(Duration::from_millis(1500));
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        Next::KeepAlive
    });
    let mut gate = Gate::start(&upstream.url(), &[]);
    let mut idle = gate.client();
    idle.send(b"GET /warm HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(idle.response().status, 200);
    let addr = gate.addr;
    let der = gate.cert().der.clone();
    let in_flight = std::thread::spawn(move || {
        let mut client = Client::connect(addr, &der);
        client.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n");
        client.response()
    });
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(gate.pid(), libc::SIGTERM) };
    let started = Instant::now();
    let response = in_flight.join().unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "slow"));
    assert_eq!(
        gate.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        gate.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the idle keep-alive connection held up the stop"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after SIGTERM"
    );
}

/// A certificate and key made with the openssl command line, as users bring them. `genkey` is
/// the key command; `OUT` in it is replaced by the key's path.
fn openssl_pair(dir: &TempDir, name: &str, genkey: &[&str]) -> (String, String) {
    let key = dir.path().join(format!("{name}-key.pem"));
    let cert = dir.path().join(format!("{name}-cert.pem"));
    let key_arg = key.display().to_string();
    let args: Vec<&str> = genkey
        .iter()
        .map(|a| if *a == "OUT" { key_arg.as_str() } else { a })
        .collect();
    let status = Command::new("openssl").args(&args).status().unwrap();
    assert!(status.success(), "openssl {args:?}");
    let status = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ])
        // A leaf, not openssl's default CA:TRUE, which clients refuse as a server certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-key"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .status()
        .unwrap();
    assert!(status.success(), "openssl req");
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn pem_keys_load_as_pkcs1_sec1_and_pkcs8() {
    let upstream = Upstream::ok();
    let dir = TempDir::new("key-formats");
    let formats: [(&str, &[&str], &str); 3] = [
        (
            "pkcs1",
            &["genrsa", "-traditional", "-out", "OUT", "2048"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            "sec1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "OUT",
            ],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "pkcs8",
            &["genpkey", "-algorithm", "ed25519", "-out", "OUT"],
            "BEGIN PRIVATE KEY",
        ),
    ];
    for (name, genkey, marker) in formats {
        let (cert, key) = openssl_pair(&dir, name, genkey);
        assert!(
            std::fs::read_to_string(&key).unwrap().contains(marker),
            "{name} key is not {marker}"
        );
        let pem = std::fs::read(&cert).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
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
        let mut client = Client::connect(gate.addr, &der);
        client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(client.response().status, 200, "{name}");
    }
}
