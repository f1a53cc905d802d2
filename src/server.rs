//! Listening: the HTTPS port (TLS handshake, or a redirect for plain HTTP sent to it), the
//! optional plain-HTTP redirect port, signals, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_signal::{Signal, Signals};
use async_std::net::{TcpListener, TcpStream};
use futures::{pin_mut, select, FutureExt, StreamExt};
use futures_rustls::TlsAcceptor;

use crate::config::Config;
use crate::connection::{self, Peer};
use crate::error::ConfigError;
use crate::gate::Gate;
use crate::readahead::ReadAhead;
use crate::redirect;

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Connections past `max_connections` still get a written 503, up to this many more; beyond
/// that they are closed unanswered, so a flood cannot grow the gate's work without bound.
const OVERFLOW_ANSWERED: usize = 64;

pub struct Listeners {
    pub https: TcpListener,
    pub redirect: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, ConfigError> {
        let bind = |flag, address| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| ConfigError::Bind {
                    flag,
                    address,
                    source,
                })
        };
        let https = bind("--listen", config.listen).await?;
        let redirect = match config.redirect_http {
            Some(address) => Some(bind("--redirect-http", address).await?),
            None => None,
        };
        Ok(Listeners { https, redirect })
    }
}

/// Serves until SIGTERM or SIGINT, then lets open exchanges finish (bounded) and returns.
pub async fn run(gate: Arc<Gate>, listeners: Listeners) {
    async_std::task::spawn(watch_signals(gate.clone()));
    async_std::task::spawn(housekeeping(gate.clone()));
    let https = accept_loop(
        listeners.https,
        gate.clone(),
        |stream, peer, gate| async move {
            serve_tls_port(stream, peer, &gate).await;
        },
    );
    let plain = async {
        if let Some(listener) = listeners.redirect {
            accept_loop(listener, gate.clone(), |stream, peer, gate| async move {
                redirect::answer(stream, peer, &gate).await;
            })
            .await;
        }
    };
    futures::future::join(https, plain).await;
    let open = gate.shutdown.open_connections();
    let grace = gate.limits.shutdown_grace;
    eprintln!(
        "stopping: no new connections; waiting up to {} s for {open} open ones",
        grace.as_secs()
    );
    if !gate.shutdown.drained(grace).await {
        eprintln!(
            "stopping: {} connections still open after {} s; closing them",
            gate.shutdown.open_connections(),
            grace.as_secs()
        );
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, gate: Arc<Gate>, handle: F)
where
    F: Fn(TcpStream, SocketAddr, Arc<Gate>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = {
            let accept = listener.accept().fuse();
            let stop = gate.shutdown.wait().fuse();
            pin_mut!(accept, stop);
            select! {
                accepted = accept => accepted,
                () = stop => return,
            }
        };
        let overflowing =
            gate.shutdown.open_connections() >= gate.limits.max_connections + OVERFLOW_ANSWERED;
        match accepted {
            Ok((stream, _)) if overflowing => drop(stream),
            Ok((stream, peer)) => {
                let guard_gate = gate.clone();
                guard_gate.shutdown.opened();
                let task = handle(stream, peer, gate.clone());
                async_std::task::spawn(async move {
                    task.await;
                    guard_gate.shutdown.closed();
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("warning: accept failed: {e}");
                async_std::task::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_tls_port(stream: TcpStream, addr: SocketAddr, gate: &Gate) {
    let _ = stream.set_nodelay(true);
    let limits = &gate.limits;
    let mut first = [0u8; 1];
    match async_std::io::timeout(limits.handshake_timeout, stream.peek(&mut first)).await {
        Ok(1) => {}
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        redirect::answer(stream, addr, gate).await;
        return;
    }
    let acceptor = TlsAcceptor::from(gate.tls.current());
    let stream = ReadAhead::new(stream);
    let tls = match async_std::io::timeout(limits.handshake_timeout, acceptor.accept(stream)).await
    {
        Ok(tls) => tls,
        Err(_) => return,
    };
    // With --client-ca the handshake only completes for a verified device.
    let verified_device =
        gate.setup.client_auth.is_some() && tls.get_ref().1.peer_certificates().is_some();
    let peer = Peer {
        addr,
        verified_device,
    };
    // This connection is already counted among the open ones.
    if gate.shutdown.open_connections() > limits.max_connections {
        connection::refuse_overloaded(tls, peer, gate).await;
        return;
    }
    connection::serve(tls, peer, gate).await;
}

async fn watch_signals(gate: Arc<Gate>) {
    let mut signals = match Signals::new([Signal::Term, Signal::Int, Signal::Hup]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("warning: cannot watch signals ({e}); SIGTERM will stop the gate abruptly");
            return;
        }
    };
    while let Some(signal) = signals.next().await {
        match signal {
            Ok(Signal::Hup) => {
                reload_certificate(&gate);
                reload_revocations(&gate);
            }
            Ok(_) => {
                gate.shutdown.trigger();
                return;
            }
            Err(e) => {
                eprintln!("warning: signal handling failed: {e}");
                return;
            }
        }
    }
}

/// How often housekeeping runs: certificate, key, CA and revocation files are checked for a
/// change (certbot and acme.sh replace them in place; they do not signal us), idle upstream
/// connections Duplicati closed are let go, and memory freed by a burst is returned.
const HOUSEKEEPING: Duration = Duration::from_secs(2);
/// A drop of this many open connections since the last tick returns free memory to the system.
const TRIM_AFTER_CLOSING: usize = 32;

async fn housekeeping(gate: Arc<Gate>) {
    let tls_files = gate.setup.watched_files();
    let deny_file: Vec<PathBuf> = gate
        .setup
        .client_auth
        .iter()
        .filter_map(|(_, deny)| deny.path().map(Path::to_owned))
        .collect();
    let mut tls_stamp = stamps(&tls_files);
    let mut deny_stamp = stamps(&deny_file);
    let mut open_before = gate.shutdown.open_connections();
    loop {
        let tick = async_std::task::sleep(HOUSEKEEPING).fuse();
        let stop = gate.shutdown.wait().fuse();
        pin_mut!(tick, stop);
        select! {
            () = tick => {}
            () = stop => return,
        }
        let now = stamps(&tls_files);
        if now != tls_stamp {
            tls_stamp = now;
            reload_certificate(&gate);
        }
        let now = stamps(&deny_file);
        if now != deny_stamp {
            deny_stamp = now;
            reload_revocations(&gate);
        }
        gate.pool.prune();
        let open = gate.shutdown.open_connections();
        if open + TRIM_AFTER_CLOSING <= open_before {
            return_free_memory();
        }
        open_before = open;
    }
}

/// glibc keeps memory freed by closed connections for reuse; after a burst of thousands of
/// connections that is a hundred MiB a home server wants back.
fn return_free_memory() {
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Modification time and size of each file (None if unreadable): what changes on a renewal.
fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Replaces the served certificate; a broken new pair keeps the old one serving.
pub fn reload_certificate(gate: &Gate) {
    match gate.setup.build() {
        Ok(config) => {
            gate.tls.replace(config);
            eprintln!("certificate reloaded; new connections get it, open ones keep theirs");
        }
        Err(e) => eprintln!("warning: certificate not reloaded, the old one keeps serving: {e}"),
    }
}

fn reload_revocations(gate: &Gate) {
    let Some((_, deny)) = &gate.setup.client_auth else {
        return;
    };
    match deny.reload() {
        Ok(count) if deny.path().is_some() => {
            eprintln!("revocation list reloaded: {count} entries")
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("warning: revocation list not reloaded, the old one stays in force: {e}")
        }
    }
}

/// Each client connection holds two descriptors (its own and Duplicati's); the usual soft limit
/// of 1024 would cap the gate near 500 connections. Raises the soft limit to the hard one and
/// warns if even that cannot hold `max_connections`.
pub fn raise_open_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    };
    let needed = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(64);
    if !raised || limit.rlim_cur < needed {
        eprintln!(
            "warning: the open-file limit ({}) is too low for --max-connections {max_connections}; \
             raise it (ulimit -n, or LimitNOFILE= in a systemd unit) or lower --max-connections",
            limit.rlim_cur
        );
    }
}
