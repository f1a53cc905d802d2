//! The image as users get it: non-root, the ports it says, a HEALTHCHECK that works without a
//! shell, the plain-HTTP port redirecting, and what Duplicati receives from the gate.

use harness::client::{self, Request};
use harness::serde_json::Value;
use harness::stack::{self, StackOptions, GATE_HOST};
use harness::{ensure, Error, Result};

#[test]
fn image_runs_as_deployed() {
    stack::run("image_runs_as_deployed", StackOptions::default(), |s| {
        let gate = s.gate.as_ref().ok_or_else(|| Error::msg("no gate"))?;
        let user = gate.inspect("{{.Config.User}}")?;
        ensure!(
            user == "65532:65532",
            "the gate must run as 65532:65532, image says {user:?}"
        );
        let ports = gate.inspect("{{json .Config.ExposedPorts}}")?;
        ensure!(
            ports.contains("8443/tcp") && ports.contains("8080/tcp"),
            "EXPOSE should list 8443 and 8080: {ports}"
        );
        let health = gate.inspect("{{json .Config.Healthcheck.Test}}")?;
        ensure!(
            health == r#"["CMD","/usr/local/bin/duplicati-gate","health"]"#,
            "HEALTHCHECK must be exec-form `duplicati-gate health` (no shell in scratch): {health}"
        );
        // What the engine's health check runs, run now rather than after its interval.
        let (code, output) = gate.exec(&["health"])?;
        ensure!(
            code == 0,
            "`duplicati-gate health` in the container exited {code}: {output}"
        );

        let https = s.gate_endpoint()?;
        let redirect = s.redirect_endpoint();
        s.duplicati.clear_recorded_requests()?;
        s.client(move || -> Result<()> {
            let r = client::send(&redirect, &Request::new("GET", "/ngclient/settings?x=%2F"))?;
            ensure!(
                matches!(r.status, 301 | 308),
                "plain HTTP should redirect:\n{r}"
            );
            let location = r.header("location").unwrap_or("");
            ensure!(
                location.starts_with(&format!("https://{GATE_HOST}"))
                    && location.ends_with("/ngclient/settings?x=%2F"),
                "redirect should go to https://{GATE_HOST}… with the target kept, got {location:?}"
            );
            let r = client::send(&https, &Request::new("GET", "/health"))?;
            ensure!(r.status == 200, "GET /health through the gate:\n{r}");
            Ok(())
        })??;

        // The forwarded headers the gate adds, as Duplicati received them.
        if let Some(log) = s.duplicati.recorded_requests()? {
            let health = log
                .iter()
                .find(|r| r.get("target").and_then(Value::as_str) == Some("/health"))
                .ok_or_else(|| {
                    Error::msg(format!("GET /health never reached the stand-in: {log:?}"))
                })?;
            let fwd = health.get("forwarded").cloned().unwrap_or(Value::Null);
            let field = |name: &str| {
                fwd.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            ensure!(
                field("x-forwarded-proto") == "https",
                "X-Forwarded-Proto: {fwd}"
            );
            ensure!(
                field("x-forwarded-for").contains(&s.client_ns.client_ip.to_string()),
                "X-Forwarded-For should name the client {}: {fwd}",
                s.client_ns.client_ip
            );
            ensure!(
                field("x-forwarded-host").starts_with(GATE_HOST),
                "X-Forwarded-Host: {fwd}"
            );
        } else {
            // Real Duplicati ignores X-Forwarded-* and keeps no request log: nothing to observe.
            eprintln!(
                "(real Duplicati: X-Forwarded-* not observable; checked against the stand-in)"
            );
        }
        Ok(())
    });
}
