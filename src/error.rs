//! Configuration errors: each names the flag or file at fault and how to fix it. `main` turns
//! them into exit code 2.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum ConfigError {
    /// A flag's value is unusable.
    Flag {
        flag: &'static str,
        problem: String,
        fix: String,
    },
    /// A file could not be read (or written).
    File {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A file was read but its content is unusable.
    Content {
        what: &'static str,
        path: PathBuf,
        problem: String,
        fix: &'static str,
    },
    /// The certificate and the private key do not belong together.
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
    },
    Tls(rustls::Error),
    Bind {
        flag: &'static str,
        address: std::net::SocketAddr,
        source: io::Error,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Flag { flag, problem, fix } => write!(f, "{flag}: {problem} ({fix})"),
            ConfigError::File { what, path, source } => {
                write!(f, "cannot read {what} {}: {source}", path.display())?;
                match source.kind() {
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        " (the gate runs as uid {}; make the file readable by that user, e.g. chown it, or run as root)",
                        current_uid()
                    ),
                    io::ErrorKind::NotFound => f.write_str(" (check the path; inside a container, check the volume mount)"),
                    _ => Ok(()),
                }
            }
            ConfigError::Content { what, path, problem, fix } => {
                write!(f, "{what} {}: {problem} ({fix})", path.display())
            }
            ConfigError::KeyMismatch { cert, key } => write!(
                f,
                "the private key {} does not belong to the certificate {} (pass the key that was issued with this certificate)",
                key.display(),
                cert.display()
            ),
            ConfigError::Tls(e) => write!(f, "TLS setup failed: {e}"),
            ConfigError::Bind { flag, address, source } => {
                write!(f, "{flag} {address}: cannot listen: {source}")?;
                match source.kind() {
                    io::ErrorKind::AddrInUse => f.write_str(" (another program uses this port; stop it or pick another port)"),
                    io::ErrorKind::PermissionDenied => f.write_str(
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port like 8443, or grant the capability)",
                    ),
                    io::ErrorKind::AddrNotAvailable => f.write_str(" (this machine has no such address; use 0.0.0.0 or one of its own addresses)"),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::File { source, .. } | ConfigError::Bind { source, .. } => Some(source),
            ConfigError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rustls::Error> for ConfigError {
    fn from(e: rustls::Error) -> Self {
        ConfigError::Tls(e)
    }
}

pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
