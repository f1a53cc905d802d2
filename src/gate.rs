//! What every connection shares: limits, the upstream pool, the live TLS configuration, and the
//! shutdown signal with its count of connections still open.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use event_listener::Event;

use crate::access::allow::AllowList;
use crate::access::throttle::Throttle;
use crate::config::Limits;
use crate::tls::{TlsHandle, TlsSetup};
use crate::upstream::Pool;

pub struct Gate {
    pub limits: Limits,
    pub pool: Pool,
    pub tls: TlsHandle,
    /// What `tls` is built from, to rebuild it when certificate files change.
    pub setup: TlsSetup,
    pub shutdown: Shutdown,
    pub access: Access,
    /// The HTTPS port clients use, for redirects.
    pub https_port: u16,
}

/// Access control and the headers the gate adds.
pub struct Access {
    pub allow: AllowList,
    pub throttle: Option<Throttle>,
    /// Duplicati's `Authorization: PreAuth` token for verified client certificates.
    pub preauth: Option<String>,
    pub hsts: bool,
}

#[derive(Default)]
pub struct Shutdown {
    stopping: AtomicBool,
    stop: Event,
    open: AtomicUsize,
    closed: Event,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify(usize::MAX);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once `trigger` was called.
    pub async fn wait(&self) {
        loop {
            if self.is_stopping() {
                return;
            }
            let listener = self.stop.listen();
            if self.is_stopping() {
                return;
            }
            listener.await;
        }
    }

    /// Counts a connection as open; `closed` must follow when it ends.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.closed.notify(usize::MAX);
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open, or `grace` passed. True if all closed.
    pub async fn drained(&self, grace: Duration) -> bool {
        let all_closed = async {
            loop {
                if self.open_connections() == 0 {
                    return;
                }
                let listener = self.closed.listen();
                if self.open_connections() == 0 {
                    return;
                }
                listener.await;
            }
        };
        async_std::future::timeout(grace, all_closed).await.is_ok()
    }
}
