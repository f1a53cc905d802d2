//! WebSockets on `/notifications` held open for the whole load, each pinging now and then and
//! reading every message the stand-in pushes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::conn::Failure;
use crate::load::Load;
use crate::stats::Rng;
use crate::ws::{Incoming, Ws};

pub const KIND: &str = "websocket";
/// Pings every 5-15 s: often enough that a dead tunnel shows within the run, rare enough that a
/// few hundred sockets stay a background load.
const PING_MIN: Duration = Duration::from_secs(5);
const PING_SPREAD_MS: u64 = 10_000;
/// The stand-in answers a ping at once; the gate's tunnel adds a copy each way.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Duplicati's status messages are a few hundred bytes; the buffer grows for a larger frame.
const WS_BUF: usize = 8 * 1024;

pub async fn holder(load: Arc<Load>, id: usize) {
    let mut rng = Rng::new(0x5EED_0000 + id as u64);
    let mut counted = false;
    while !load.load_over() {
        let token = load.token();
        let opened = async {
            let conn = load.connect(WS_BUF).await?;
            Ws::open(conn, &load.client.host, &token).await
        };
        let (mut ws, first) = match opened.await {
            Ok(x) => x,
            Err(f) => {
                load.stats.error("websocket open", &f);
                load.pause(RETRY_PAUSE).await;
                continue;
            }
        };
        if !counted {
            counted = true;
            load.opened.fetch_add(1, Ordering::Relaxed);
        }
        load.stats.count_ws_message();
        if first.get("Type").and_then(Value::as_str) != Some("legacystatus") {
            load.stats.error(
                KIND,
                &Failure::new(
                    "protocol",
                    format!("first message is not legacystatus: {first}"),
                ),
            );
        }
        load.stats.ok("websocket open");
        match hold(&load, &mut ws, &mut rng, id).await {
            Ok(()) => match ws.close().await {
                Ok(()) => load.stats.ok("websocket close"),
                Err(f) => load.stats.error("websocket close", &f),
            },
            Err(f) => load.stats.error(KIND, &f),
        }
    }
}

/// Pings until the load ends; each ping's reply must come back (other messages are counted).
async fn hold(load: &Load, ws: &mut Ws, rng: &mut Rng, id: usize) -> Result<(), Failure> {
    let mut n = 0u64;
    loop {
        load.pause(PING_MIN + Duration::from_millis(rng.below(PING_SPREAD_MS)))
            .await;
        if load.load_over() {
            return Ok(());
        }
        n += 1;
        let ping_id = format!("{id}-{n}");
        ws.send_text(&json!({"Version": 1, "Id": ping_id, "Action": "ping"}).to_string())
            .await?;
        async_std::future::timeout(REPLY_DEADLINE, pong(load, ws, &ping_id))
            .await
            .map_err(|_| {
                Failure::new(
                    "timeout",
                    format!("no ping reply within {REPLY_DEADLINE:?}"),
                )
            })??;
        load.stats.ok("websocket ping");
    }
}

async fn pong(load: &Load, ws: &mut Ws, ping_id: &str) -> Result<(), Failure> {
    loop {
        match ws.next().await? {
            Incoming::Text(t) => {
                load.stats.count_ws_message();
                let v: Value = serde_json::from_str(&t)
                    .map_err(|e| Failure::new("protocol", format!("message not JSON: {e}")))?;
                let is_reply = v.get("Type").and_then(Value::as_str) == Some("reply")
                    && v.get("Id").and_then(Value::as_str) == Some(ping_id);
                if is_reply {
                    return if v.get("Success").and_then(Value::as_bool) == Some(true) {
                        Ok(())
                    } else {
                        Err(Failure::new("protocol", format!("ping refused: {t}")))
                    };
                }
            }
            Incoming::Close(code) => {
                return Err(Failure::new(
                    "closed",
                    format!("server closed the socket ({code:?}) mid-run"),
                ))
            }
        }
    }
}
