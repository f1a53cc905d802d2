//! What every load task shares, the login, and the keep-alive connections making small API calls
//! with think time between them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_std::channel::{self, Receiver, Sender};
use serde_json::{json, Value};

use crate::cli::Config;
use crate::conn::{Conn, Failure};
use crate::stats::{Rng, Stats};
use crate::tls::Client;

/// Handshakes in flight at once during the ramp-up. Thousands at once on two cores would push
/// some past the gate's 10 s handshake timeout: a test artefact, not a finding.
const CONCURRENT_HANDSHAKES: usize = 32;
/// One small call, request to last body byte. Under full load on two cores p99 stays far below;
/// a call this slow is a failure a user would notice.
pub const SMALL_DEADLINE: Duration = Duration::from_secs(30);
/// After a failed connect, before the next try: no hot loop against a refusing gate.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The stand-in's access tokens live 15 minutes (Duplicati's JWTConfig default); log in again
/// well before.
const TOKEN_RENEWAL: Duration = Duration::from_secs(10 * 60);
/// Read buffer of a small-call connection: the largest small response (backups list) fits.
const SMALL_BUF: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Health,
    ServerState,
    Backups,
}

impl Call {
    const ALL: [Call; 3] = [Call::Health, Call::ServerState, Call::Backups];

    pub fn name(self) -> &'static str {
        match self {
            Call::Health => "GET /health",
            Call::ServerState => "GET /api/v1/serverstate",
            Call::Backups => "GET /api/v1/backups",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Call::Health => "/health",
            Call::ServerState => "/api/v1/serverstate",
            Call::Backups => "/api/v1/backups",
        }
    }
}

pub struct Load {
    pub config: Config,
    pub client: Client,
    pub stats: Stats,
    pub password: String,
    token: RwLock<String>,
    /// When load stops: no new call, transfer or ping starts after this.
    pub end: Instant,
    /// SHA-256 of the pattern by (seed, size), computed before the load starts.
    pub digests: HashMap<(u64, u64), String>,
    /// Connections (small and WebSocket) that completed their first handshake.
    pub opened: AtomicUsize,
    permits: (Sender<()>, Receiver<()>),
}

impl Load {
    pub fn new(
        config: Config,
        client: Client,
        password: String,
        token: String,
        end: Instant,
        digests: HashMap<(u64, u64), String>,
    ) -> Load {
        Load {
            config,
            client,
            stats: Stats::default(),
            password,
            token: RwLock::new(token),
            end,
            digests,
            opened: AtomicUsize::new(0),
            permits: channel::bounded(CONCURRENT_HANDSHAKES),
        }
    }

    pub fn token(&self) -> String {
        self.token
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn load_over(&self) -> bool {
        Instant::now() >= self.end
    }

    /// A new connection, at most CONCURRENT_HANDSHAKES at once.
    pub async fn connect(&self, buf: usize) -> Result<Conn, Failure> {
        // The channel is never closed while `self` lives; a send error cannot happen.
        let _ = self.permits.0.send(()).await;
        let conn = self.client.connect(buf).await;
        let _ = self.permits.1.try_recv();
        conn
    }

    /// Sleeps `d` or until the load ends, whichever is first.
    pub async fn pause(&self, d: Duration) {
        let left = self.end.saturating_duration_since(Instant::now());
        async_std::task::sleep(d.min(left)).await;
    }

    pub fn digest(&self, seed: u64, size: u64) -> &str {
        self.digests
            .get(&(seed, size))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// POST /api/v1/auth/login; the access token from the answer.
pub async fn login(client: &Client, password: &str) -> Result<String, Failure> {
    let mut conn = client.connect(SMALL_BUF).await?;
    let body = json!({ "Password": password, "RememberMe": false }).to_string();
    let req = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        client.host,
        body.len()
    );
    conn.send(req.as_bytes()).await?;
    let head = conn.head().await?;
    let answer = conn.body_vec(&head).await?;
    conn.close().await;
    if head.status != 200 {
        return Err(Failure::new(
            "status",
            format!("login answered {}", head.status),
        ));
    }
    serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v.get("AccessToken")?.as_str().map(String::from))
        .ok_or_else(|| Failure::new("protocol", "login answer has no AccessToken"))
}

/// Logs in again every TOKEN_RENEWAL until the load ends.
pub async fn keep_token(load: std::sync::Arc<Load>) {
    loop {
        let due = Instant::now() + TOKEN_RENEWAL;
        while Instant::now() < due {
            if load.load_over() {
                return;
            }
            load.pause(Duration::from_secs(1)).await;
        }
        match login(&load.client, &load.password).await {
            Ok(t) => {
                load.stats.ok("POST /api/v1/auth/login");
                if let Ok(mut slot) = load.token.write() {
                    *slot = t;
                }
            }
            Err(f) => load.stats.error("login", &f),
        }
    }
}

/// One keep-alive connection: think, call, repeat until the load ends, then close cleanly.
pub async fn small_worker(load: std::sync::Arc<Load>, id: usize) {
    let mut rng = Rng::new(id as u64 + 1);
    let mut conn: Option<Conn> = None;
    let mut next = id;
    let mut counted = false;
    while !load.load_over() {
        let think = Duration::from_millis(rng.below(load.config.think_max.as_millis() as u64 + 1));
        let c = match conn.take() {
            Some(c) => {
                load.pause(think).await;
                c
            }
            None => match load.connect(SMALL_BUF).await {
                Ok(c) => {
                    if !counted {
                        counted = true;
                        load.opened.fetch_add(1, Ordering::Relaxed);
                    }
                    // The first call comes after a pause too, so calls spread out over time.
                    load.pause(think).await;
                    c
                }
                Err(f) => {
                    load.stats.error("connect", &f);
                    load.pause(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        if load.load_over() {
            c.close().await;
            return;
        }
        let call = Call::ALL[next % Call::ALL.len()];
        next += 1;
        let mut c = c;
        let started = Instant::now();
        match async_std::future::timeout(SMALL_DEADLINE, exchange(&mut c, &load, call)).await {
            Ok(Ok(keep)) => {
                load.stats.latency(started.elapsed());
                load.stats.ok(call.name());
                if keep {
                    conn = Some(c);
                } else {
                    load.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    c.close().await;
                }
            }
            Ok(Err(f)) => load.stats.error(call.name(), &f),
            Err(_) => load.stats.error(
                call.name(),
                &Failure::new(
                    "timeout",
                    format!("no full answer within {SMALL_DEADLINE:?}"),
                ),
            ),
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// One call; true if the connection stays open. Checks status and the shape of the answer.
async fn exchange(conn: &mut Conn, load: &Load, call: Call) -> Result<bool, Failure> {
    let auth = match call {
        Call::Health => String::new(),
        _ => format!("Authorization: Bearer {}\r\n", load.token()),
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{auth}Accept: application/json\r\n\r\n",
        call.path(),
        load.client.host
    );
    conn.send(req.as_bytes()).await?;
    let head = conn.head().await?;
    let body = conn.body_vec(&head).await?;
    if head.status != 200 {
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(120).collect();
        return Err(Failure::new(
            "status",
            format!("answered {} ({excerpt:?})", head.status),
        ));
    }
    let shape_ok = match call {
        Call::Health => body == b"Healthy",
        Call::ServerState => serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object()),
        Call::Backups => serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_array()),
    };
    if !shape_ok {
        return Err(Failure::new(
            "body",
            format!("unexpected answer of {} bytes", body.len()),
        ));
    }
    Ok(!head.close)
}
