//! `/notifications`: the 2.1+ WebSocket.
//! // Duplicati/WebserverCore/Middlewares/WebsocketExtensions.cs (UseNotifications),
//! // Notifications/WebsocketAuthenticator.cs, Notifications/WebsocketAccessor.cs
//!
//! Two ways in: `?token=<access JWT>` (ngax, 2.1+) is authenticated during the handshake and the
//! server pushes a `legacystatus` message right after the 101; without a valid query token
//! (ngclient, 2.2+) the first text frame must be `{"Version":1,"Token":…}`, answered with the
//! `auth` reply or closed with 4401 "Invalid token".

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures::{FutureExt, StreamExt};
use http_types::upgrade::Connection;
use http_types::{Response, StatusCode};
use serde_json::{json, Value};

use crate::app::App;
use crate::ctx::{field, field_str, Ctx};
use crate::events::Event;
use crate::reply;
use crate::status::legacy_status_message;

// WebsocketAuthenticator.cs: an unauthenticated socket is closed after 60 s.
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
// ASP.NET WebSocketOptions default KeepAliveInterval: 2 minutes.
const KEEP_ALIVE: Duration = Duration::from_secs(120);

fn header_has(ctx: &Ctx, name: &str, token: &str) -> bool {
    ctx.header(name)
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Handshake. A GET that is not a WebSocket upgrade is `400` (WebsocketExtensions.cs).
pub async fn accept(app: &Arc<App>, ctx: &Ctx) -> Response {
    let key = ctx.header("sec-websocket-key");
    let valid = ctx.method == http_types::Method::Get
        && header_has(ctx, "upgrade", "websocket")
        && header_has(ctx, "connection", "upgrade")
        && ctx.header("sec-websocket-version").as_deref() == Some("13");
    let Some(key) = key.filter(|_| valid) else {
        return reply::empty(400);
    };
    // JwtBearerEvents.OnMessageReceived reads ?token= on this path; PreAuth works too.
    let authed = app.auth.authenticate(ctx, true).is_some();
    let mut res = Response::new(StatusCode::SwitchingProtocols);
    res.insert_header("upgrade", "websocket");
    res.insert_header("connection", "Upgrade");
    res.insert_header(
        "sec-websocket-accept",
        derive_accept_key(key.trim().as_bytes()),
    );
    let upgrade = res.recv_upgrade().await;
    // Frames are not requests: stop capturing on this connection (record.rs).
    ctx.io.disarm();
    let app = app.clone();
    async_std::task::spawn(async move {
        if let Some(conn) = upgrade.await {
            session(app, conn, authed).await;
        }
    });
    res
}

type Ws = WebSocketStream<Connection>;

async fn send(ws: &mut Ws, v: &Value) -> bool {
    ws.send(Message::text(v.to_string())).await.is_ok()
}

async fn close(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = ws.close(Some(frame)).await;
}

async fn session(app: Arc<App>, conn: Connection, query_authed: bool) {
    let mut ws = WebSocketStream::from_raw_socket(conn, Role::Server, None).await;
    let events = app.events.subscribe();
    let mut subs: BTreeSet<String> = BTreeSet::new();
    if query_authed {
        // 2.1 behaviour: the legacy status follows the handshake at once and on every change.
        subs.insert("legacystatus".into());
        if !send(&mut ws, &legacy_status_message(&app)).await {
            return;
        }
    } else {
        let first = async_std::future::timeout(AUTH_TIMEOUT, next_text(&mut ws)).await;
        let token_ok = match first {
            Ok(Some(text)) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| field_str(&v, "Token").map(|t| app.auth.websocket_token_ok(t)))
                .unwrap_or(false),
            _ => false,
        };
        if !token_ok {
            close(&mut ws, 4401, "Invalid token").await;
            return;
        }
        let ok = json!({"Version": 1, "Message": "Authenticated successfully", "Success": true, "Type": "auth"});
        if !send(&mut ws, &ok).await {
            return;
        }
    }
    loop {
        let step = {
            let keep_alive = async_std::task::sleep(KEEP_ALIVE).fuse();
            let event = events.recv().fuse();
            let incoming = ws.next().fuse();
            futures::pin_mut!(keep_alive, event, incoming);
            futures::select! {
                _ = keep_alive => Step::KeepAlive,
                e = event => match e {
                    Ok(e) => Step::Event(e),
                    Err(_) => Step::Stop,
                },
                m = incoming => match m {
                    Some(Ok(Message::Text(t))) => Step::Text(t.as_str().to_string()),
                    Some(Ok(Message::Close(_))) => Step::PeerClosed,
                    None | Some(Err(_)) => Step::Stop,
                    Some(Ok(_)) => Step::Nothing,
                },
            }
        };
        let out: Vec<Value> = match step {
            Step::Stop => return,
            // RFC 6455 §5.5.1: a Close is answered with a Close, as Kestrel's WebSocket does.
            // tungstenite only queued the reply when it read the frame; flushing writes it
            // (`ws.close` would try to send a second Close and fail before flushing).
            Step::PeerClosed => {
                let _ = futures::SinkExt::flush(&mut ws).await;
                return;
            }
            Step::Nothing => Vec::new(),
            Step::KeepAlive => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
                Vec::new()
            }
            Step::Event(Event::StatusChanged) if subs.contains("legacystatus") => {
                vec![legacy_status_message(&app)]
            }
            Step::Event(Event::TaskCompleted(data)) if subs.contains("taskcompleted") => {
                vec![json!({"Type": "taskcompleted", "ApiVersion": 1, "Data": data})]
            }
            Step::Event(_) => Vec::new(),
            Step::Text(t) => handle_request(&app, &mut subs, &t),
        };
        for m in out {
            if !send(&mut ws, &m).await {
                return;
            }
        }
    }
}

enum Step {
    KeepAlive,
    Event(Event),
    Text(String),
    Nothing,
    PeerClosed,
    Stop,
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// `{"Version":1,"Id","Action":"sub|unsub|ping|status","Service","Data"}` ⇒ a `reply`, plus the
/// current data after subscribing to legacystatus. WebsocketAccessor.cs (HandleClientMessage).
fn handle_request(app: &App, subs: &mut BTreeSet<String>, text: &str) -> Vec<Value> {
    let Ok(req) = serde_json::from_str::<Value>(text) else {
        return vec![
            json!({"Version": 1, "Id": null, "Message": "Invalid request", "Success": false, "Data": null, "Type": "reply"}),
        ];
    };
    let id = field(&req, "Id").cloned().unwrap_or(Value::Null);
    let service = field_str(&req, "Service").map(|s| s.to_ascii_lowercase());
    let reply = |msg: &str, ok: bool, data: Value| json!({"Version": 1, "Id": id, "Service": service, "Message": msg, "Success": ok, "Data": data, "Type": "reply"});
    const SERVICES: &[&str] = &[
        "legacystatus",
        "backuplist",
        "serversettings",
        "progress",
        "taskqueue",
        "taskcompleted",
        "notifications",
        "remotecontrol",
    ];
    match field_str(&req, "Action")
        .map(|a| a.to_ascii_lowercase())
        .as_deref()
    {
        Some("sub") => match service.as_deref() {
            Some(s) if SERVICES.contains(&s) => {
                subs.insert(s.to_string());
                let mut out = vec![reply("Subscribed successfully", true, Value::Null)];
                if s == "legacystatus" {
                    out.push(legacy_status_message(app));
                }
                out
            }
            _ => vec![reply("Unknown service", false, Value::Null)],
        },
        Some("unsub") => {
            let removed = service.as_deref().is_some_and(|s| subs.remove(s));
            vec![reply(
                if removed {
                    "Unsubscribed successfully"
                } else {
                    "Not subscribed"
                },
                removed,
                Value::Null,
            )]
        }
        Some("ping") => vec![reply("pong", true, Value::Null)],
        Some("status") => vec![reply("OK", true, json!(subs.iter().collect::<Vec<_>>()))],
        // The auth message again after authenticating: accepted and acknowledged.
        Some("auth") => vec![
            json!({"Version": 1, "Message": "Authenticated successfully", "Success": true, "Type": "auth"}),
        ],
        _ => vec![reply("Unknown action", false, Value::Null)],
    }
}
