//! The gate's certificate for this run and a TLS client that trusts exactly that certificate.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_std::net::TcpStream;
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

use crate::conn::{Conn, Failure};

/// Connect plus handshake. The gate's own handshake timeout is 10 s; waiting longer would only
/// report the gate's refusal later.
const HANDSHAKE: Duration = Duration::from_secs(15);

pub struct Client {
    config: Arc<ClientConfig>,
    pub addr: SocketAddr,
    /// `Host:` for every request: the address as typed, which the stand-in's host check allows.
    pub host: String,
}

/// Writes `cert.pem` and `key.pem` for 127.0.0.1 into `dir`; returns the client side's trust.
pub fn make_cert(dir: &Path) -> Result<RootCertStore, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("key generation failed: {e}"))?;
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| format!("certificate generation failed: {e}"))?;
    // The key 0600, as the gate asks of every key it loads (it warns otherwise).
    for (file, pem, mode) in [
        ("cert.pem", cert.pem(), 0o644),
        ("key.pem", key.serialize_pem(), 0o600),
    ] {
        let path = dir.join(file);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut roots = RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .map_err(|e| format!("the made certificate is not a usable trust anchor: {e}"))?;
    Ok(roots)
}

impl Client {
    pub fn new(roots: RootCertStore, addr: SocketAddr) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            config: Arc::new(config),
            addr,
            host: addr.to_string(),
        })
    }

    /// A verified TLS connection with a read buffer of `buf` bytes.
    pub async fn connect(&self, buf: usize) -> Result<Conn, Failure> {
        let stream = async_std::future::timeout(HANDSHAKE, self.handshake())
            .await
            .map_err(|_| {
                Failure::new("timeout", format!("connect+handshake over {HANDSHAKE:?}"))
            })??;
        Ok(Conn::new(stream, buf))
    }

    async fn handshake(&self) -> Result<TlsStream<TcpStream>, Failure> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| Failure::new("connect", format!("connect {}: {e}", self.addr)))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(self.addr.ip().into());
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::new("tls", format!("handshake: {e}")))
    }
}
