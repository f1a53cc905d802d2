//! Shared state, the accept loop, and the per-request entry point.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_std::net::TcpListener;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_types::{Request, Response};

use crate::auth::{random_bytes, Auth};
use crate::backups::Store;
use crate::config::{Config, Profile};
use crate::ctx::Ctx;
use crate::events::Events;
use crate::hostcheck::HostCheck;
use crate::legacy::LegacyAuth;
use crate::record::{CaptureStream, RequestLog};
use crate::tasks::{self, Tasks};
use crate::{bulk, reply, routes};

pub struct App {
    pub config: Config,
    pub data_dir: PathBuf,
    pub auth: Auth,
    pub legacy: LegacyAuth,
    pub hosts: HostCheck,
    pub store: Store,
    pub tasks: Tasks,
    pub events: Events,
    pub log: RequestLog,
    /// The password in force (configured, or generated for 2.3 without one).
    pub password: Option<String>,
}

/// `--data-dir`, else /data, else a temporary folder when /data is not writable.
fn resolve_data_dir(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = configured {
        fs::create_dir_all(d).map_err(|e| {
            format!("cannot create --data-dir {}: {e} (create it writable for this uid, or pick another folder)", d.display())
        })?;
        return Ok(d.to_path_buf());
    }
    let probe = |d: &Path| {
        let file = d.join(".standin-probe");
        let ok = fs::create_dir_all(d)
            .and_then(|_| fs::write(&file, b""))
            .is_ok();
        let _ = fs::remove_file(&file);
        ok
    };
    let data = PathBuf::from("/data");
    if probe(&data) {
        return Ok(data);
    }
    let tmp = std::env::temp_dir().join(format!("duplicati-standin-{}", std::process::id()));
    if probe(&tmp) {
        return Ok(tmp);
    }
    Err(format!(
        "neither /data nor {} is writable: pass --data-dir=DIR",
        tmp.display()
    ))
}

/// The JWT signing key survives restarts like Duplicati's (kept in its server database).
fn signing_key(dir: &Path) -> Vec<u8> {
    let file = dir.join("jwt-signing-key");
    if let Ok(k) = fs::read(&file) {
        if k.len() == 32 {
            return k;
        }
    }
    let k = random_bytes::<32>().to_vec();
    if let Err(e) = fs::write(&file, &k) {
        eprintln!(
            "warning: cannot keep the signing key in {}: {e}",
            file.display()
        );
    }
    k
}

impl App {
    /// Builds the state and starts the task worker. Prints Duplicati's start-up warnings.
    pub fn start(config: Config) -> Result<Arc<App>, String> {
        let data_dir = resolve_data_dir(config.data_dir.as_deref())?;
        if !config.encryption_key_set {
            // Duplicati/Library/RestAPI/Strings.cs (NoEncryptionKeySpecified).
            println!("No database encryption key was found. The database will be stored unencrypted. Supply an encryption key via the environment variable SETTINGS_ENCRYPTION_KEY or disable database encryption with the option --disable-db-encryption");
        }
        let password = match (&config.password, config.profile) {
            (Some(p), _) => Some(p.clone()),
            // 2.1+: no password => a random one (only the signin link lets anyone in).
            (None, Profile::Current) => Some(URL_SAFE_NO_PAD.encode(random_bytes::<24>())),
            // 2.0: no password => no authentication at all.
            (None, Profile::Legacy) => None,
        };
        let auth = Auth::new(
            &signing_key(&data_dir),
            password.clone().unwrap_or_default(),
            config.pre_auth_tokens.clone(),
            config.refresh_duration.as_secs() as i64,
            config.disable_signin_tokens,
        );
        let (tasks, rx) = Tasks::new();
        let app = Arc::new(App {
            hosts: HostCheck::new(&config.allowed_hostnames),
            legacy: LegacyAuth::default(),
            store: Store::load(Some(data_dir.clone())),
            events: Events::default(),
            log: RequestLog::default(),
            data_dir,
            auth,
            tasks,
            password,
            config,
        });
        async_std::task::spawn(tasks::worker(app.clone(), rx));
        Ok(app)
    }

    pub fn legacy(&self) -> bool {
        self.config.profile == Profile::Legacy
    }

    /// Reads the whole body first, so the capture holds this request completely and can be
    /// re-armed for the next head (see record.rs).
    async fn handle(
        self: Arc<Self>,
        io: CaptureStream,
        peer: SocketAddr,
        mut req: Request,
    ) -> Response {
        if self.config.bulk_endpoints && req.url().path().eq_ignore_ascii_case(bulk::PATH) {
            let res = bulk::serve(req).await;
            // The body was streamed, not kept: drop what the capture holds and arm for the next head.
            io.take(true);
            return res;
        }
        let body = req.body_bytes().await;
        let raw = io.take(true);
        let Ok(body) = body else {
            return reply::empty(400);
        };
        let ctx = Ctx::new(req.method(), raw, body, io);
        if self.config.record_requests && !ctx.path.starts_with("/__standin/") {
            self.log
                .push(&peer.to_string(), &ctx.raw, self.password.as_deref());
        }
        routes::route(&self, ctx).await
    }
}

/// Accepts connections forever; each one is served by async-h1 over a [`CaptureStream`].
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        // Kestrel's socket transport sets TCP_NODELAY by default (SocketTransportOptions.NoDelay).
        // Without it async-h1's separate head and body writes meet the peer's delayed ACK: every
        // response after the first on a keep-alive connection took 40 ms.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        async_std::task::spawn(async move {
            let io = CaptureStream::new(stream);
            let handler_io = io.clone();
            let served = async_h1::accept(io, move |req| {
                let app = app.clone();
                let io = handler_io.clone();
                async move { Ok(app.handle(io, peer, req).await) }
            })
            .await;
            // async-h1 drops a connection it cannot parse; nothing to answer here.
            drop(served);
        });
    }
}
