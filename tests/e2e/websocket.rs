//! `/notifications` through the gate: both ways Duplicati authenticates a WebSocket, the status
//! it pushes right after the upgrade, and its close code for a bad token.

use harness::api::Api;
use harness::serde_json::{json, Value};
use harness::stack::{self, StackOptions};
use harness::websocket::{Message, WebSocket};
use harness::{bail, ensure, Result};

#[test]
fn websocket_auth_and_status_through_the_gate() {
    stack::run(
        "websocket_auth_and_status_through_the_gate",
        StackOptions::default(),
        |s| {
            let endpoint = s.gate_endpoint()?;
            let password = s.password.clone();
            s.duplicati.clear_recorded_requests()?;
            let token = s.client(move || -> Result<String> {
            let token = Api::new(endpoint.clone()).login(&password)?.access_token;

            // Auth A (2.1+): ?token=, then Duplicati pushes its legacy status at once.
            let mut ws = WebSocket::connect(&endpoint, &format!("/notifications?token={token}"), &[])?;
            let status = ws.recv_json()?;
            ensure!(
                status.get("ProgramState").is_some() && status.get("Type") == Some(&json!("legacystatus")),
                "first message after the upgrade should be the status, got {status}"
            );
            ws.close(1000)?;

            // Auth B (2.2+): connect bare, authenticate in the first frame, then subscribe.
            let mut ws = WebSocket::connect(&endpoint, "/notifications", &[])?;
            ws.send_text(&json!({"Version": 1, "Token": token, "Action": "auth"}).to_string())?;
            let auth = ws.recv_json()?;
            ensure!(
                auth.get("Success") == Some(&json!(true)) && auth.get("Type") == Some(&json!("auth")),
                "first-message auth failed: {auth}"
            );
            ws.send_text(
                &json!({"Version": 1, "Id": "req-1", "Action": "sub", "Service": "legacystatus", "Data": null})
                    .to_string(),
            )?;
            let reply = ws.recv_json()?;
            ensure!(
                reply.get("Id") == Some(&json!("req-1")) && reply.get("Success") == Some(&json!(true)),
                "subscription reply: {reply}"
            );

            // A bad token is closed with Duplicati's 4401, and the gate passes the code on.
            let mut ws = WebSocket::connect(&endpoint, "/notifications", &[])?;
            ws.send_text(&json!({"Version": 1, "Token": "not-a-token", "Action": "auth"}).to_string())?;
            match ws.recv()? {
                Message::Close(Some(4401), _) => {}
                other => bail!("a bad token should close with 4401, got {other:?}"),
            }
            Ok(token)
        })??;

            // The stand-in saw the upgrade with its query intact and the upgrade headers passed on.
            if let Some(log) = s.duplicati.recorded_requests()? {
                let want = format!("/notifications?token={token}");
                let upgrade = log
                    .iter()
                    .find(|r| r.get("target").and_then(Value::as_str) == Some(want.as_str()));
                let Some(upgrade) = upgrade else {
                    bail!("the upgrade request never reached Duplicati byte-exact")
                };
                ensure!(
                    upgrade
                        .get("upgrade")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
                    "Upgrade header lost on the way: {upgrade}"
                );
            } else {
                // The status that arrived after a ?token= upgrade is the behavioural proof.
                eprintln!("(real Duplicati: no request log; the query token worked, so it arrived intact)");
            }
            Ok(())
        },
    );
}
