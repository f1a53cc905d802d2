//! The embedded default: a self-signed certificate made on first run, kept in the state directory
//! and reused afterwards, so the fingerprint the user checked in the browser stays the same.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::error::ConfigError;
use crate::tls::CertSource;

const CERT_FILE: &str = "self-signed-cert.pem";
const KEY_FILE: &str = "self-signed-key.pem";
/// The longest validity Apple's TLS policy accepts for certificates a user chooses to trust,
/// counted from `not_before` (a day back, for clocks that lag).
const VALIDITY_DAYS: i64 = 825;
const BACKDATE_DAYS: i64 = 1;
/// Renew this long before expiry, so a running gate never serves an expired certificate.
const RENEW_BEFORE_DAYS: i64 = 30;

/// Reuses the certificate in `dir`, or makes one for `names`. Returns where it is and whether
/// it was made just now.
pub fn ensure(dir: &Path, names: &[String]) -> Result<(CertSource, bool), ConfigError> {
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    let source = CertSource::Pem {
        cert: cert.clone(),
        key: key.clone(),
    };
    if cert.exists() && key.exists() && !expires_soon(&cert) {
        return Ok((source, false));
    }
    fs::create_dir_all(dir).map_err(|source| state_dir_error(dir, source))?;
    let (cert_pem, key_pem) = generate(names)?;
    write_private(&key, key_pem.as_bytes())?;
    fs::write(&cert, cert_pem).map_err(|source| state_dir_error(dir, source))?;
    Ok((source, true))
}

fn state_dir_error(dir: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Flag {
        flag: "--state-dir",
        problem: format!(
            "cannot write the self-signed certificate to {}: {source}",
            dir.display()
        ),
        fix: "pass a writable --state-dir, or give your own certificate with --cert and --key"
            .into(),
    }
}

fn expires_soon(cert_path: &Path) -> bool {
    let Ok(pem) = fs::read(cert_path) else {
        return true;
    };
    let Some(Ok(der)) = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem).next()
        as Option<Result<rustls_pki_types::CertificateDer<'_>, _>>
    else {
        return true;
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, cert)) => {
            let not_after = cert.validity().not_after.timestamp();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            not_after - now < RENEW_BEFORE_DAYS * 86_400
        }
        Err(_) => true,
    }
}

/// A P-256 certificate for `names` (DNS names or IP addresses), PEM encoded: (certificate, key).
pub fn generate(names: &[String]) -> Result<(String, String), ConfigError> {
    let cert_error = |e: rcgen::Error| ConfigError::Flag {
        flag: "--host",
        problem: format!("cannot make a certificate: {e}"),
        fix: "use DNS names (gate.lan) or IP addresses".into(),
    };
    let mut params = CertificateParams::new(names.to_vec()).map_err(cert_error)?;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        names
            .first()
            .map(String::as_str)
            .unwrap_or("duplicati-gate"),
    );
    subject.push(DnType::OrganizationName, "duplicati-gate self-signed");
    params.distinguished_name = subject;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(BACKDATE_DAYS);
    params.not_after = params.not_before + time::Duration::days(VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.self_signed(&key).map_err(cert_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a private key readable by its owner only (0600), replacing any old one.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), ConfigError> {
    let write = || -> std::io::Result<()> {
        let _ = fs::remove_file(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(data)
    };
    write().map_err(|source| ConfigError::File {
        what: "private key (writing)",
        path: path.to_owned(),
        source,
    })
}

/// The names a self-signed certificate covers: this machine's hostname, `localhost`, the
/// listen IP if it is a specific one, and whatever the user added.
pub fn default_names(listen: &std::net::SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    extra.iter().cloned().for_each(&mut add);
    if let Some(host) = hostname() {
        add(host);
    }
    add("localhost".into());
    if !listen.ip().is_unspecified() {
        add(listen.ip().to_string());
    }
    names
}

fn hostname() -> Option<String> {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = raw.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Paths `gen-cert` writes.
pub fn output_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cert.pem"), dir.join("key.pem"))
}
