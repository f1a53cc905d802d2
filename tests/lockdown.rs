//! Beyond a password: client certificates with revocation, the address allow-list, login
//! throttling, HSTS and security headers, certificates that renew, pre-auth for trusted devices.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client_config, run_gate, Client, Gate, Next, TempDir, TestCert, Upstream};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A device certificate made by `gen-client-cert`, read back from its PKCS#12 bundle.
struct Device {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    serial: String,
}

fn gen_client_cert(state: &TempDir, name: &str) -> Device {
    let out = state.path().join("devices");
    let (code, stdout, stderr) = run_gate(&[
        "gen-client-cert",
        "--name",
        name,
        "--state-dir",
        state.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("import it into the device's browser"),
        "{stdout}"
    );
    let password = stdout
        .split("password: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    let serial = stdout
        .split("serial ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let bundle = std::fs::read(out.join(format!("{name}.p12"))).unwrap();
    let store = p12_keystore::KeyStore::from_pkcs12(
        &bundle,
        &password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .unwrap();
    let (_, chain) = store.private_key_chain().unwrap();
    Device {
        chain: chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect(),
        key: PrivateKeyDer::try_from(chain.key().as_der().to_vec()).unwrap(),
        serial,
    }
}

fn device_config(gate: &Gate, device: &Device) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gate.cert().der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(device.chain.clone(), device.key.clone_key())
    .unwrap();
    Arc::new(config)
}

/// True if a request over this configuration gets an HTTP answer. In TLS 1.3 the client sees its
/// side of the handshake finish before the gate has judged its certificate, so the refusal shows
/// as an alert on the first read instead of an HTTP response.
fn gets_an_answer(gate: &Gate, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut client) = Client::try_connect_with(gate.addr, config) else {
        return false;
    };
    client.send(b"GET /api/v1/backups HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head = client.read_bytes(12);
    head.starts_with(b"HTTP/1.1 200")
}

#[test]
fn only_devices_with_an_unrevoked_certificate_get_through() {
    let upstream = Upstream::ok();
    let state = TempDir::new("mtls");
    let laptop = gen_client_cert(&state, "laptop");
    let phone = gen_client_cert(&state, "phone");
    let ca = state.path().join("client-ca-cert.pem");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.path().join("client-ca-key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let revoked = state.path().join("revoked.txt");
    std::fs::write(&revoked, "# lost devices\n").unwrap();
    let gate = Gate::start(
        &upstream.url(),
        &[
            "--client-ca",
            ca.to_str().unwrap(),
            "--revoked",
            revoked.to_str().unwrap(),
        ],
    );

    assert!(
        gets_an_answer(&gate, device_config(&gate, &laptop)),
        "a device with a certificate is served"
    );
    assert!(
        !gets_an_answer(&gate, Arc::new(client_config(&gate.cert().der))),
        "no certificate: refused"
    );
    let other_ca = TestCert::new();
    let stranger = Device {
        chain: vec![other_ca.der.clone()],
        key: PrivateKeyDer::from_pem_file(&other_ca.key).unwrap(),
        serial: String::new(),
    };
    assert!(
        !gets_an_answer(&gate, device_config(&gate, &stranger)),
        "a certificate from another CA: refused"
    );
    assert_eq!(
        upstream.recorded().len(),
        1,
        "only the verified device reached Duplicati"
    );

    std::fs::write(
        &revoked,
        format!("# lost devices\n{}  # laptop, stolen\n", laptop.serial),
    )
    .unwrap();
    let log = gate.wait_for_stderr("revocation list reloaded: 1 entries");
    assert!(log.contains("revocation list reloaded: 1 entries"), "{log}");
    assert!(
        !gets_an_answer(&gate, device_config(&gate, &laptop)),
        "the revoked laptop is refused"
    );
    assert!(
        gets_an_answer(&gate, device_config(&gate, &phone)),
        "the phone still gets in"
    );
    assert!(gate.stderr().contains(&format!(
        "refused a revoked client certificate (serial {})",
        laptop.serial
    )));
}

#[test]
fn the_allow_list_refuses_other_addresses_before_anything_is_forwarded() {
    let upstream = Upstream::ok();
    let outsider = Gate::start(
        &upstream.url(),
        &["--allow", "10.0.0.0/8", "--allow", "fd00::/8"],
    );
    let mut client = outsider.client();
    client.send(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
    );
    let response = client.response();
    assert_eq!(response.status, 403);
    assert!(
        response.text().contains("127.0.0.1 is not allowed"),
        "{}",
        response.text()
    );
    assert!(upstream.recorded().is_empty());

    let insider = Gate::start(&upstream.url(), &["--allow", "127.0.0.0/8"]);
    let mut client = insider.client();
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().status, 200);
}

fn login(gate: &Gate, password: &str) -> common::Response {
    let body = format!("{{\"Password\":\"{password}\",\"RememberMe\":true}}");
    let mut client = gate.client();
    client.send(
        format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    client.response()
}

#[test]
fn failed_logins_are_throttled_after_the_limit_and_reset_by_a_success() {
    let upstream = Upstream::start(|ex| {
        let body = ex.body();
        let is_login = ex.head.starts_with(b"POST /api/v1/auth/login ");
        if !is_login || String::from_utf8_lossy(&body).contains("right") {
            ex.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            );
        } else {
            let error = br#"{"Error":"Failed to log in","Code":401}"#;
            ex.write(
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\n\r\n",
                    error.len()
                )
                .as_bytes(),
            );
            ex.write(error);
        }
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &["--login-attempts", "3"]);
    assert_eq!(login(&gate, "wrong-1").status, 401);
    assert_eq!(login(&gate, "wrong-2").status, 401);
    assert_eq!(
        login(&gate, "right").status,
        200,
        "under the limit a login still works"
    );
    // The success reset the count: two more failures are again under the limit.
    assert_eq!(login(&gate, "wrong-3").status, 401);
    assert_eq!(login(&gate, "wrong-4").status, 401);
    assert_eq!(
        login(&gate, "wrong-5").status,
        401,
        "the third failure in a row is still answered by Duplicati"
    );
    let forwarded = upstream.wait_for(6).len();
    let throttled = login(&gate, "right");
    assert_eq!(throttled.status, 429);
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        upstream.recorded().len(),
        forwarded,
        "a throttled login never reaches Duplicati"
    );
    let log = gate.stderr();
    assert!(
        log.contains("login throttled: 127.0.0.1 after 3 failed logins"),
        "{log}"
    );
    // Other endpoints are not throttled.
    let mut client = gate.client();
    client.send(b"GET /api/v1/serverstate HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().status, 200);
}

#[test]
fn hsts_comes_with_your_own_certificate_only_and_nosniff_always() {
    let upstream = Upstream::ok();
    let own = Gate::start(&upstream.url(), &[]);
    let mut client = own.client();
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.response();
    assert_eq!(
        response.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    assert_eq!(
        response.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        response.header("referrer-policy").as_deref(),
        Some("same-origin")
    );

    let state = TempDir::new("hsts-state");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ]
    .map(String::from);
    let self_signed = Gate::spawn(&args);
    self_signed.wait_for_stderr("fingerprint");
    let pem = std::fs::read(state.path().join("self-signed-cert.pem")).unwrap();
    let mut client = Client::connect(
        self_signed.addr,
        &CertificateDer::from_pem_slice(&pem).unwrap(),
    );
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.response();
    assert!(
        response.header("strict-transport-security").is_none(),
        "HSTS would lock out the click-through"
    );
    assert_eq!(
        response.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
}

#[test]
fn a_renewed_certificate_is_served_to_new_connections_and_a_broken_one_is_not() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let first = gate.cert().der.clone();
    let renewed = TestCert::new();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(first.clone()).unwrap();
    roots.add(renewed.der.clone()).unwrap();
    let either = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let served =
        |client: &Client| client.stream.get_ref().1.peer_certificates().unwrap()[0].clone();

    let mut open = Client::connect_with(gate.addr, either.clone());
    open.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(open.response().status, 200);
    assert_eq!(served(&open), first);

    // certbot-style renewal: new files moved over the old ones.
    for (from, to) in [
        (&renewed.key, &gate.cert().key),
        (&renewed.cert, &gate.cert().cert),
    ] {
        let staging = to.with_extension("new");
        std::fs::copy(from, &staging).unwrap();
        std::fs::rename(&staging, to).unwrap();
    }
    gate.wait_for_stderr("certificate reloaded");
    let fresh = Client::connect_with(gate.addr, either.clone());
    assert_eq!(
        served(&fresh),
        renewed.der,
        "the next connection gets the renewed certificate"
    );
    open.send(b"GET /still-open HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(
        open.response().status,
        200,
        "the open connection keeps working"
    );

    // A broken pair (a key that does not match) keeps the renewed one serving.
    std::fs::copy(&TestCert::new().key, &gate.cert().key).unwrap();
    let log = gate.wait_for_stderr("certificate not reloaded");
    assert!(log.contains("does not belong to the certificate"), "{log}");
    let after = Client::connect_with(gate.addr, either);
    assert_eq!(served(&after), renewed.der);
}

#[test]
fn a_verified_device_gets_duplicatis_preauth_token_and_never_sees_it() {
    let upstream = Upstream::start(|ex| {
        let auth = ex.header("authorization").unwrap_or_default();
        let body = format!("{{\"seen\":\"{}\"}}", auth.len());
        ex.write(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        Next::KeepAlive
    });
    let state = TempDir::new("preauth");
    let laptop = gen_client_cert(&state, "laptop");
    let token_file = state.path().join("preauth-token");
    std::fs::write(&token_file, "gate_preauth_0123456789\n").unwrap();
    let ca = state.path().join("client-ca-cert.pem");
    let gate = Gate::start(
        &upstream.url(),
        &[
            "--client-ca",
            ca.to_str().unwrap(),
            "--preauth-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let mut client = Client::connect_with(gate.addr, device_config(&gate, &laptop));
    client
        .send(b"POST /api/v1/auth/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 200);
    assert!(!response.head.contains("gate_preauth") && !response.text().contains("gate_preauth"));
    let seen = upstream.wait_for(1);
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("PreAuth gate_preauth_0123456789")
    );
    assert!(
        !gate.stderr().contains("gate_preauth"),
        "the token must not be logged"
    );
}
