//! Lock it down, deployed: the gate's image with `--client-ca` in front of Duplicati. A device
//! holding a certificate from `duplicati-gate gen-client-cert` logs in through the gate; a
//! client without one gets no HTTP answer at all.

use std::process::Command;

use harness::api::Api;
use harness::certs::Device;
use harness::client::{self, Request};
use harness::stack::{self, StackOptions};
use harness::{ensure, Result};

/// Makes a client CA and one device bundle the way a user does, with the gate's own binary.
fn enroll_device(dir: &std::path::Path) -> (std::path::PathBuf, Device) {
    let output = Command::new(env!("CARGO_BIN_EXE_duplicati-gate"))
        .args(["gen-client-cert", "--name", "e2e-laptop", "--state-dir"])
        .arg(dir)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run duplicati-gate gen-client-cert");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gen-client-cert failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let password = stdout
        .split("password: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no password in:\n{stdout}"))
        .trim();
    let device =
        Device::from_pkcs12(&dir.join("e2e-laptop.p12"), password).expect("open the device bundle");
    (dir.join("client-ca-cert.pem"), device)
}

#[test]
fn a_device_with_a_client_certificate_logs_in_through_the_gate() {
    let dir = std::env::temp_dir().join(format!("dgate-e2e-clientca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ca, device) = enroll_device(&dir);
    let opts = StackOptions {
        client_ca: Some(ca),
        ..StackOptions::default()
    };
    stack::run(
        "a_device_with_a_client_certificate_logs_in_through_the_gate",
        opts,
        |s| {
            let as_device = s.gate_endpoint_as(&device)?;
            let anonymous = s.gate_endpoint()?;
            let password = s.password.clone();
            s.client(move || -> Result<()> {
                let mut api = Api::new(as_device);
                api.login(&password)?;
                api.expect_json(Request::new("GET", "/api/v1/serverstate"))?;
                let refused = client::send(&anonymous, &Request::new("GET", "/health"));
                ensure!(
                    refused.is_err(),
                    "a client without a certificate got an HTTP answer: {:?}",
                    refused.map(|r| r.status)
                );
                Ok(())
            })??;
            Ok(())
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
}
