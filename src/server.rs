//! Listening: the HTTPS port (TLS handshake, or a redirect for plain HTTP sent to it), the
//! optional plain-HTTP redirect port, signals, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_signal::{Signal, Signals};
use async_std::net::{TcpListener, TcpStream};
use futures::{pin_mut, select, FutureExt, StreamExt};
use futures_rustls::TlsAcceptor;

use crate::config::Config;
use crate::connection;
use crate::error::ConfigError;
use crate::gate::Gate;
use crate::redirect;
use crate::tls::{self, CertSource};

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

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
pub async fn run(gate: Arc<Gate>, listeners: Listeners, cert_source: CertSource) {
    async_std::task::spawn(watch_signals(gate.clone(), cert_source));
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
                redirect::answer(stream, peer, &gate.limits, gate.https_port).await;
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
        match accepted {
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

async fn serve_tls_port(stream: TcpStream, peer: SocketAddr, gate: &Gate) {
    let _ = stream.set_nodelay(true);
    let limits = &gate.limits;
    let mut first = [0u8; 1];
    match async_std::io::timeout(limits.handshake_timeout, stream.peek(&mut first)).await {
        Ok(1) => {}
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        redirect::answer(stream, peer, limits, gate.https_port).await;
        return;
    }
    let acceptor = TlsAcceptor::from(gate.tls.current());
    let tls = match async_std::io::timeout(limits.handshake_timeout, acceptor.accept(stream)).await
    {
        Ok(tls) => tls,
        Err(_) => return,
    };
    connection::serve(tls, peer, gate).await;
}

async fn watch_signals(gate: Arc<Gate>, cert_source: CertSource) {
    let mut signals = match Signals::new([Signal::Term, Signal::Int, Signal::Hup]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("warning: cannot watch signals ({e}); SIGTERM will stop the gate abruptly");
            return;
        }
    };
    while let Some(signal) = signals.next().await {
        match signal {
            Ok(Signal::Hup) => reload_certificate(&gate, &cert_source),
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

/// Replaces the served certificate; a broken new pair keeps the old one serving.
pub fn reload_certificate(gate: &Gate, source: &CertSource) {
    match tls::load(source).and_then(tls::server_config) {
        Ok(config) => {
            gate.tls.replace(config);
            eprintln!("certificate reloaded; new connections get it, open ones keep theirs");
        }
        Err(e) => eprintln!("warning: certificate not reloaded, the old one keeps serving: {e}"),
    }
}
