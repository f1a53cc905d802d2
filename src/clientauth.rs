//! Mutual TLS: only devices holding a certificate signed by `--client-ca` complete the handshake,
//! and a deny-list file (`--revoked`) takes lost or retired devices out again.
//!
//! The deny list holds one entry per line: a certificate serial number (hex, as `gen-client-cert`
//! prints it) or a SHA-256 fingerprint (64 hex digits, colons allowed); `#` starts a comment. It
//! is re-read when it changes, so revoking a device needs no restart. A revoked certificate is
//! refused in the handshake with the `certificate_revoked` alert.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::error::ConfigError;
use crate::tls;

/// Revoked serial numbers and fingerprints, normalised to lower-case hex without separators.
#[derive(Debug, Default)]
pub struct DenyList {
    path: Option<PathBuf>,
    entries: RwLock<HashSet<String>>,
}

impl DenyList {
    pub fn load(path: Option<&Path>) -> Result<DenyList, ConfigError> {
        let list = DenyList {
            path: path.map(Path::to_owned),
            entries: RwLock::default(),
        };
        list.reload()?;
        Ok(list)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file. On error the previous entries stay in force.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let Some(path) = &self.path else { return Ok(0) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            what: "revocation list",
            path: path.clone(),
            source,
        })?;
        let mut entries = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let hex: String = entry
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::Content {
                    what: "revocation list",
                    path: path.clone(),
                    problem: format!(
                        "line {}: {entry:?} is neither a serial number nor a fingerprint",
                        number + 1
                    ),
                    fix: "one hex serial number or SHA-256 fingerprint per line, # for comments",
                });
            }
            entries.insert(hex.trim_start_matches('0').to_string());
        }
        let count = entries.len();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
        Ok(count)
    }

    pub fn is_revoked(&self, cert: &CertificateDer<'_>) -> bool {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        if entries.is_empty() {
            return false;
        }
        let fingerprint = tls::fingerprint(cert).replace(':', "").to_ascii_lowercase();
        let serial = serial_hex(cert).unwrap_or_default();
        entries.contains(fingerprint.trim_start_matches('0'))
            || (!serial.is_empty() && entries.contains(&serial))
    }
}

/// The certificate's serial number as lower-case hex without leading zeros.
pub fn serial_hex(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let hex: String = parsed
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(hex.trim_start_matches('0').to_string())
}

/// The WebPKI client verifier for `ca`, with the deny list checked after it.
pub fn verifier(
    ca: &Path,
    deny: Arc<DenyList>,
) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let pem = std::fs::read(ca).map_err(|source| ConfigError::File {
        what: "client CA",
        path: ca.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    let bad = |problem: String| {
        ConfigError::Content {
        what: "client CA",
        path: ca.to_owned(),
        problem,
        fix: "pass the CA certificate (PEM) that signed the devices' certificates, e.g. client-ca-cert.pem from gen-client-cert",
    }
    };
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate found".into()));
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(RevocationChecking { inner, deny }))
}

#[derive(Debug)]
struct RevocationChecking {
    inner: Arc<dyn ClientCertVerifier>,
    deny: Arc<DenyList>,
}

impl ClientCertVerifier for RevocationChecking {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.deny.is_revoked(end_entity) {
            eprintln!(
                "refused a revoked client certificate (serial {})",
                serial_hex(end_entity).unwrap_or_default()
            );
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
