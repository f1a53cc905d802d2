//! Test certificates, made fresh for every run: a throw-away CA the client trusts, and the gate's
//! leaf for the names the client uses.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::error::{Context, Error, Result};

/// The uid and gid the gate's image runs as (`USER 65532:65532`).
pub const CONTAINER_UID: u32 = 65532;

pub struct TestCerts {
    /// Holds `cert.pem` and `key.pem`, owned by the container user; bind-mounted at `/certs`.
    pub dir: PathBuf,
    pub ca: CertificateDer<'static>,
}

impl TestCerts {
    /// A CA, and a leaf for `dns_name` and `ip` signed by it, written under `dir`.
    pub fn generate(dir: &Path, dns_name: &str, ip: IpAddr) -> Result<TestCerts> {
        let ca_key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("CA params"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "duplicati-gate e2e test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(rcgen_error("CA certificate"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().map_err(rcgen_error("leaf key"))?;
        let mut leaf_params = CertificateParams::new(vec![dns_name.to_owned(), ip.to_string()])
            .map_err(rcgen_error("leaf params"))?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, dns_name);
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .map_err(rcgen_error("leaf certificate"))?;

        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, leaf.pem())
            .with_context(|| format!("cannot write {}", cert_path.display()))?;
        std::fs::write(&key_path, leaf_key.serialize_pem())
            .with_context(|| format!("cannot write {}", key_path.display()))?;
        // The gate runs as 65532 and must read the key; 0400 is what a careful operator sets.
        set_mode(&key_path, 0o400)?;
        set_mode(&cert_path, 0o444)?;
        set_mode(dir, 0o755)?;
        for path in [dir, &cert_path, &key_path] {
            chown(path, CONTAINER_UID)?;
        }
        Ok(TestCerts {
            dir: dir.to_owned(),
            ca: ca_cert.der().clone(),
        })
    }

    /// As `client_config`, presenting the device's certificate when asked.
    pub fn client_config_as(&self, device: &Device) -> Result<Arc<rustls::ClientConfig>> {
        let config = self
            .trusting_the_ca()?
            .with_client_auth_cert(device.chain.clone(), device.key.clone_key())
            .context("the device certificate and key do not fit together")?;
        Ok(Arc::new(config))
    }

    /// A client configuration trusting only the test CA, on the aws-lc-rs provider.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        Ok(Arc::new(self.trusting_the_ca()?.with_no_client_auth()))
    }

    fn trusting_the_ca(
        &self,
    ) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .context("the test CA is not a valid trust anchor")?;
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("aws-lc-rs offers no TLS versions")?
        .with_root_certificates(roots))
    }
}

/// A device's certificate and key, as `duplicati-gate gen-client-cert` delivers them.
pub struct Device {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl Device {
    /// Opens the PKCS#12 bundle with its password, as a browser import does.
    pub fn from_pkcs12(path: &Path, password: &str) -> Result<Device> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let store = p12_keystore::KeyStore::from_pkcs12(
            &data,
            password,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .map_err(|e| Error::msg(format!("cannot open {}: {e}", path.display())))?;
        let (_, entry) = store
            .private_key_chain()
            .ok_or_else(|| Error::msg(format!("{} holds no key", path.display())))?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(entry.key().as_der().to_vec())
            .map_err(|e| Error::msg(format!("{}: unusable key: {e}", path.display())))?;
        Ok(Device {
            chain: entry
                .certs()
                .iter()
                .map(|c| CertificateDer::from(c.as_der().to_vec()))
                .collect(),
            key,
        })
    }
}

fn rcgen_error(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::msg(format!("rcgen cannot make the test {what}: {e}"))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {mode:o} {}", path.display()))
}

/// chown to the container user, so bind mounts are usable by a non-root container.
pub fn chown(path: &Path, uid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .with_context(|| format!("cannot chown {uid} {}", path.display()))
}
