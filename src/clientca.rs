//! `gen-client-cert`: a small local CA, made on first use and kept in the state directory, that
//! signs one certificate per device, delivered as a browser-importable PKCS#12 bundle.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::ConfigError;
use crate::selfsigned::write_private;

pub const CA_CERT_FILE: &str = "client-ca-cert.pem";
const CA_KEY_FILE: &str = "client-ca-key.pem";
const CA_VALIDITY_DAYS: i64 = 3650;
const DEVICE_VALIDITY_DAYS: i64 = 825;

pub struct Device {
    pub bundle: PathBuf,
    pub password: String,
    pub serial: String,
    pub fingerprint: String,
    pub ca_cert: PathBuf,
    pub ca_created: bool,
}

fn cert_error(e: rcgen::Error) -> ConfigError {
    ConfigError::Flag {
        flag: "--name",
        problem: format!("cannot make the certificate: {e}"),
        fix: "use a plain device name such as laptop or phone".into(),
    }
}

fn state_error(dir: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Flag {
        flag: "--state-dir",
        problem: format!("cannot use {}: {source}", dir.display()),
        fix: "pass a writable --state-dir (the same one serve uses)".into(),
    }
}

/// Makes the CA if `dir` has none, then a certificate for `name` signed by it, written to
/// `out/<name>.p12`.
pub fn issue(dir: &Path, name: &str, out: &Path) -> Result<Device, ConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::Flag {
            flag: "--name",
            problem: format!("{name:?} is not a plain device name"),
            fix: "use letters, digits, '-', '_' or '.', e.g. --name laptop".into(),
        });
    }
    let (ca_pem, ca_key, ca_created) = ensure_ca(dir)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(cert_error)?;

    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject.push(DnType::OrganizationName, "duplicati-gate device");
    params.distinguished_name = subject;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let serial: [u8; 16] = random_bytes();
    // A positive DER INTEGER: the top bit clear.
    let mut serial = serial.to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = params.not_before + time::Duration::days(DEVICE_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;

    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
        ConfigError::Content {
        what: "client CA",
        path: dir.join(CA_CERT_FILE),
        problem: e.to_string(),
        fix: "remove the broken client CA files to make a new CA (devices must then be re-issued)",
    }
    })?;
    let password = password();
    let bundle = pkcs12(name, cert.der(), &key.serialize_der(), &ca_der, &password)?;
    fs::create_dir_all(out).map_err(|source| state_error(out, source))?;
    let bundle_path = out.join(format!("{name}.p12"));
    write_private(&bundle_path, &bundle)?;
    Ok(Device {
        bundle: bundle_path,
        password,
        serial: crate::clientauth::serial_hex(cert.der()).unwrap_or_default(),
        fingerprint: crate::tls::fingerprint(cert.der()),
        ca_cert: dir.join(CA_CERT_FILE),
        ca_created,
    })
}

/// The CA's certificate (PEM) and key, made now if missing.
fn ensure_ca(dir: &Path) -> Result<(String, KeyPair, bool), ConfigError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| ConfigError::File {
                what: "client CA",
                path: path.to_owned(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(cert_error)?;
        return Ok((read(&cert_path)?, key, false));
    }
    fs::create_dir_all(dir).map_err(|source| state_error(dir, source))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "duplicati-gate client CA");
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.self_signed(&key).map_err(cert_error)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    fs::write(&cert_path, cert.pem()).map_err(|source| state_error(dir, source))?;
    Ok((cert.pem(), key, true))
}

fn pkcs12(
    name: &str,
    cert: &[u8],
    key: &[u8],
    ca: &[u8],
    password: &str,
) -> Result<Vec<u8>, ConfigError> {
    let bad = |e: p12_keystore::error::Error| ConfigError::Flag {
        flag: "--name",
        problem: format!("cannot write the PKCS#12 bundle: {e}"),
        fix: "report this as a bug".into(),
    };
    let certs = [cert, ca]
        .into_iter()
        .map(p12_keystore::Certificate::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let key = p12_keystore::PrivateKey::from_der(key).map_err(bad)?;
    let local_key_id: [u8; 20] = random_bytes();
    let chain = p12_keystore::PrivateKeyChain::new(local_key_id.to_vec(), key, certs);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(name, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().map_err(bad)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // aws-lc's CSPRNG; failure here means the system has no entropy source at all.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

/// 20 characters from an alphabet without look-alikes, typed once into the browser.
fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679";
    let bytes: [u8; 20] = random_bytes();
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
