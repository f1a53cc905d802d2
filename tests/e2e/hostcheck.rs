//! Duplicati's DNS-rebinding check sees the browser's Host through the gate: it passes when the
//! name is in `DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES` and is refused when it is not.

use harness::api::Api;
use harness::client::{self, Request};
use harness::serde_json::{json, Value};
use harness::stack::{self, StackOptions, GATE_HOST};
use harness::{ensure, Result};

#[test]
fn host_check_passes_when_the_gate_name_is_allowed() {
    stack::run(
        "host_check_passes_when_the_gate_name_is_allowed",
        StackOptions::default(),
        |s| {
            let endpoint = s.gate_endpoint()?;
            let password = s.password.clone();
            s.client(move || -> Result<()> {
                let mut api = Api::new(endpoint);
                let session = api.login(&password)?;
                // Duplicati names the refresh cookie after the port in Host: proof the port survived.
                let name = session.refresh_cookie.map(|(n, _)| n).unwrap_or_default();
                ensure!(
                    name == "RefreshToken_8443",
                    "refresh cookie is {name:?}, want RefreshToken_8443"
                );
                api.expect_json(Request::new("GET", "/api/v1/serverstate"))?;
                Ok(())
            })??;
            Ok(())
        },
    );
}

#[test]
fn host_check_refuses_when_the_gate_name_is_not_allowed() {
    let opts = StackOptions {
        allowed_hostnames: "other.example".to_owned(),
        ..StackOptions::default()
    };
    stack::run(
        "host_check_refuses_when_the_gate_name_is_not_allowed",
        opts,
        |s| {
            let endpoint = s.gate_endpoint()?;
            let password = s.password.clone();
            s.client(move || -> Result<()> {
                let login = Request::new("POST", "/api/v1/auth/login")
                    .json(&json!({"Password": password, "RememberMe": true}));
                let r = client::send(&endpoint, &login)?;
                ensure!(
                    r.status == 403,
                    "login with a non-allowed Host must be 403:\n{r}"
                );
                let body: Value = r.json()?;
                let want = format!("Invalid hostname: {GATE_HOST}");
                ensure!(
                    body.get("Error").and_then(Value::as_str) == Some(want.as_str()),
                    "403 body should name the host ({want}):\n{r}"
                );
                // /health is outside the checked groups: the gate and Duplicati are otherwise fine.
                let health = client::send(&endpoint, &Request::new("GET", "/health"))?;
                ensure!(
                    health.status == 200,
                    "GET /health through the gate:\n{health}"
                );
                Ok(())
            })??;
            Ok(())
        },
    );
}
