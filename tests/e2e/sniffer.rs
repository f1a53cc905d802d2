//! No secret leaves the host in plaintext: checked on the wire, with a positive control on the
//! plaintext hop and a deliberately broken deployment the check must catch.

use harness::api::{Api, Session};
use harness::client::{self, Request};
use harness::gate::HTTPS_PORT;
use harness::serde_json::json;
use harness::sniffer::{check_backend_leg, check_outside_leg, Secret};
use harness::stack::{self, StackOptions};
use harness::websocket::WebSocket;
use harness::{ensure, Result};

/// What Duplicati must never let out: the password and everything it issued for it.
fn secrets(password: &str, sessions: &[Session]) -> Vec<Secret> {
    let mut out = vec![Secret::new("password", password)];
    for (i, s) in sessions.iter().enumerate() {
        out.push(Secret::new(&format!("access token #{i}"), &s.access_token));
        if let Some((name, value)) = &s.refresh_cookie {
            out.push(Secret::new(&format!("{name} cookie #{i}"), value));
        }
        if let Some(nonce) = &s.refresh_nonce {
            out.push(Secret::new(&format!("refresh nonce #{i}"), nonce));
        }
    }
    out
}

#[test]
fn no_plaintext_secret_leaves_the_host() {
    stack::run(
        "no_plaintext_secret_leaves_the_host",
        StackOptions::default(),
        |s| {
            let endpoint = s.gate_endpoint()?;
            let redirect = s.redirect_endpoint();
            let password = s.password.clone();
            let (outside, bridge) = s.start_captures()?;

            let sessions = s.client(move || -> Result<Vec<Session>> {
                let mut api = Api::new(endpoint.clone());
                let first = api.login(&password)?;
                api.expect_json(Request::new("GET", "/api/v1/systeminfo"))?;
                api.expect_json(Request::new("GET", "/api/v1/backups"))?;
                // The refresh cookie goes back out through the gate, as a browser reload sends it.
                let second = api.refresh()?;

                let token = &second.access_token;
                let mut by_query =
                    WebSocket::connect(&endpoint, &format!("/notifications?token={token}"), &[])?;
                let status = by_query.recv_json()?;
                ensure!(
                    status.get("ProgramState").is_some(),
                    "no status after the upgrade: {status}"
                );
                let mut by_message = WebSocket::connect(&endpoint, "/notifications", &[])?;
                by_message.send_text(
                    &json!({"Version": 1, "Token": token, "Action": "auth"}).to_string(),
                )?;
                let auth = by_message.recv_json()?;
                ensure!(
                    auth.get("Success") == Some(&json!(true)),
                    "first-message auth failed: {auth}"
                );

                // Plain HTTP on the redirect port carries nothing but the redirect.
                let r = client::send(&redirect, &Request::new("GET", "/ngclient/"))?;
                ensure!(
                    matches!(r.status, 301 | 308),
                    "port 8080 should redirect:\n{r}"
                );
                Ok(vec![first, second])
            })??;

            let outside = outside.stop()?;
            let bridge = bridge.stop()?;
            let secrets = secrets(&s.password, &sessions);
            eprintln!("{}", check_backend_leg(&bridge, &secrets)?);
            eprintln!("{}", check_outside_leg(&outside, &secrets, HTTPS_PORT)?);
            Ok(())
        },
    );
}

/// The check above could pass by seeing nothing. Here the gate is bypassed (Duplicati's plain
/// HTTP published on the veth, the mistake the gate exists to prevent) and the same check must
/// report the leak, in the encoding it actually travelled in.
#[test]
fn sniffer_reports_a_plaintext_bypass() {
    let opts = StackOptions {
        gate: false,
        publish_duplicati: true,
        ..StackOptions::default()
    };
    stack::run("sniffer_reports_a_plaintext_bypass", opts, |s| {
        let endpoint = s.bypass_endpoint();
        let password = s.password.clone();
        let (outside, bridge) = s.start_captures()?;
        let session = s.client(move || Api::new(endpoint).login(&password))??;
        let outside = outside.stop()?;
        drop(bridge);

        let secrets = secrets(&s.password, &[session]);
        let port = harness::duplicati::PORT;
        let report = match check_outside_leg(&outside, &secrets, port) {
            Ok(summary) => harness::bail!("the sniffer passed a plaintext login: {summary}"),
            Err(e) => e.to_string(),
        };
        // The login body is JSON, and the password holds a quote: only the escaped form is on
        // the wire, so a raw-only search would have missed it.
        for expected in [
            "LEAK: password (JSON-escaped)",
            "LEAK: access token #0",
            "NOT TLS",
        ] {
            ensure!(
                report.contains(expected),
                "the leak report lacks {expected:?}:\n{report}"
            );
        }
        eprintln!("bypass detected as it must be:\n{report}");
        Ok(())
    });
}
