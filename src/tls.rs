//! Certificates in (PEM or PKCS#12), a rustls server configuration out, swappable at run time.
//!
//! rustls 0.23 with the aws-lc-rs provider, chosen explicitly (never a process default): TLS 1.3
//! and 1.2 only, and aws-lc-rs's key-exchange groups, which put the post-quantum hybrid
//! X25519MLKEM768 first (rustls follows the client's order, so current browsers get it).
//! The live configuration sits behind `TlsHandle` so a renewed certificate can replace it without
//! touching open connections: each handshake takes the configuration current at that moment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::clientauth::{self, DenyList};
use crate::error::ConfigError;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Pem {
        cert: PathBuf,
        key: PathBuf,
    },
    Pkcs12 {
        file: PathBuf,
        password_file: Option<PathBuf>,
    },
}

impl CertSource {
    /// The file holding the private key.
    pub fn key_path(&self) -> &Path {
        match self {
            CertSource::Pem { key, .. } => key,
            CertSource::Pkcs12 { file, .. } => file,
        }
    }
}

pub struct Certificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// aws-lc-rs with AES-128-GCM first: its SHA-256 key schedule runs on the CPU's SHA extensions,
/// where SHA-384 (AES-256's) does not, and a handshake costs about a tenth less. AES-256-GCM and
/// ChaCha20-Poly1305 follow; the gate picks in this order, not the client's.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        let aes_128 = matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (suite.tls13().is_none(), !aes_128)
    });
    Arc::new(provider)
}

/// Reads and checks a certificate chain and its private key.
pub fn load(source: &CertSource) -> Result<Certificate, ConfigError> {
    match source {
        CertSource::Pem { cert, key } => load_pem(cert, key),
        CertSource::Pkcs12 {
            file,
            password_file,
        } => load_pkcs12(file, password_file.as_deref()),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::File {
        what,
        path: path.to_owned(),
        source,
    })
}

fn load_pem(cert_path: &Path, key_path: &Path) -> Result<Certificate, ConfigError> {
    let cert_pem = read("certificate", cert_path)?;
    let key_pem = read("private key", key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::Content {
            what: "certificate",
            path: cert_path.to_owned(),
            problem: format!("not valid PEM: {e}"),
            fix: "pass a PEM file with BEGIN CERTIFICATE blocks, leaf first",
        })?;
    if chain.is_empty() {
        return Err(ConfigError::Content {
            what: "certificate",
            path: cert_path.to_owned(),
            problem: "no certificate found".into(),
            fix: "pass a PEM file with BEGIN CERTIFICATE blocks, leaf first; is this the key file?",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ConfigError::Content {
        what: "private key",
        path: key_path.to_owned(),
        problem: format!("no usable private key: {e}"),
        fix: "pass an unencrypted PEM key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
    })?;
    let certificate = Certificate { chain, key };
    check_pair(&certificate, cert_path, key_path)?;
    Ok(certificate)
}

fn load_pkcs12(path: &Path, password_file: Option<&Path>) -> Result<Certificate, ConfigError> {
    let data = read("PKCS#12 bundle", path)?;
    let password = match password_file {
        Some(file) => {
            let raw = read("PKCS#12 password file", file)?;
            String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        }
        None => String::new(),
    };
    let store = p12_keystore::KeyStore::from_pkcs12(
        &data,
        &password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|e| ConfigError::Content {
        what: "PKCS#12 bundle",
        path: path.to_owned(),
        problem: format!("cannot open: {e}"),
        fix: "check --pkcs12-password-file (its first line is the password)",
    })?;
    let (_, entry) = store
        .private_key_chain()
        .ok_or_else(|| ConfigError::Content {
            what: "PKCS#12 bundle",
            path: path.to_owned(),
            problem: "holds no private key with its certificate".into(),
            fix: "export the bundle with the private key included",
        })?;
    let chain: Vec<_> = entry
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    let key = PrivateKeyDer::try_from(entry.key().as_der().to_vec()).map_err(|e| {
        ConfigError::Content {
            what: "PKCS#12 bundle",
            path: path.to_owned(),
            problem: format!("unusable private key: {e}"),
            fix: "export the bundle with an RSA or ECDSA key",
        }
    })?;
    let certificate = Certificate { chain, key };
    check_pair(&certificate, path, path)?;
    Ok(certificate)
}

/// The key's public half must be the one in the leaf certificate.
fn check_pair(
    certificate: &Certificate,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), ConfigError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(certificate.key.clone_key())
        .map_err(|e| ConfigError::Content {
            what: "private key",
            path: key_path.to_owned(),
            problem: format!("unsupported key: {e}"),
            fix: "use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
        })?;
    let leaf = x509_parser::parse_x509_certificate(&certificate.chain[0])
        .map_err(|e| ConfigError::Content {
            what: "certificate",
            path: cert_path.to_owned(),
            problem: format!("cannot parse: {e}"),
            fix: "pass an X.509 certificate",
        })?
        .1;
    match signing_key.public_key() {
        Some(public) if public.as_ref() != leaf.tbs_certificate.subject_pki.raw => {
            Err(ConfigError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// Everything a server configuration is built from; kept so it can be rebuilt when files change.
#[derive(Clone)]
pub struct TlsSetup {
    pub cert: CertSource,
    /// `--client-ca` and its deny list: only devices with a certificate from this CA get in.
    pub client_auth: Option<(PathBuf, Arc<DenyList>)>,
}

impl TlsSetup {
    pub fn build(&self) -> Result<Arc<ServerConfig>, ConfigError> {
        let verifier = match &self.client_auth {
            Some((ca, deny)) => Some(clientauth::verifier(ca, deny.clone())?),
            None => None,
        };
        server_config(load(&self.cert)?, verifier)
    }

    /// The files whose change calls for a rebuild.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = match &self.cert {
            CertSource::Pem { cert, key } => vec![cert.clone(), key.clone()],
            CertSource::Pkcs12 {
                file,
                password_file,
            } => {
                let mut files = vec![file.clone()];
                files.extend(password_file.iter().cloned());
                files
            }
        };
        files.extend(self.client_auth.iter().map(|(ca, _)| ca.clone()));
        files
    }
}

/// The rustls configuration the gate serves with.
pub fn server_config(
    certificate: Certificate,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certificate.chain, certificate.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Our cipher order (AES-GCM, then ChaCha20), not the client's: a scanner rightly flags a
    // server that lets clients pick.
    config.ignore_client_order = true;
    // Stateless resumption: a returning browser skips the full handshake's key exchange.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The live server configuration; replaced whole when certificates are reloaded.
pub struct TlsHandle(RwLock<Arc<ServerConfig>>);

impl TlsHandle {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsHandle(RwLock::new(config))
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }
}

/// `AB:CD:...`, as browsers show it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
