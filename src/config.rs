//! Raw command line in, checked `Config` out. Tests build a `Config` directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access::allow::AllowList;
use crate::cli::GateArgs;
use crate::error::ConfigError;
use crate::selfsigned;
use crate::tls::CertSource;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub upstream: UpstreamUrl,
    pub cert: CertChoice,
    pub redirect_http: Option<SocketAddr>,
    /// The port clients reach HTTPS on, for redirects.
    pub https_port: u16,
    pub limits: Limits,
    pub access: AccessConfig,
    /// Accepted, but probably not what the user wants; printed at start.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertChoice {
    Given(CertSource),
    /// Made on first run in `dir`, covering `names`.
    SelfSigned {
        dir: PathBuf,
        names: Vec<String>,
    },
}

/// Who may reach Duplicati, and what the gate adds for those who may.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub allow: AllowList,
    /// `(CA file, revocation list file)` for mutual TLS.
    pub client_ca: Option<(PathBuf, Option<PathBuf>)>,
    /// Duplicati pre-auth token added for verified devices.
    pub preauth_token: Option<String>,
    /// Failed logins before 429; 0 is off.
    pub login_attempts: u32,
    pub hsts: bool,
}

/// Duplicati's address: `http://host[:port]`, nothing else (Duplicati has no base path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    /// `http://host:port` as given, for messages and Location rewriting.
    pub origin: String,
}

/// Every bound on time and size a connection lives under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request head size; larger heads get 431. Duplicati's heads are under 2 KiB.
    pub max_head: usize,
    /// From a head's first byte to its end (slowloris).
    pub head_timeout: Duration,
    /// Between requests on a keep-alive connection.
    pub keep_alive_idle: Duration,
    /// Opening a connection to Duplicati; past it the client gets 502.
    pub connect_timeout: Duration,
    /// Waiting for Duplicati's response head; past it the client gets 504.
    pub response_timeout: Duration,
    /// Silence in the middle of a body, either direction.
    pub body_idle: Duration,
    /// Silence on a WebSocket; Duplicati pings every 2 minutes.
    pub tunnel_idle: Duration,
    /// The TLS handshake (and the first byte before it).
    pub handshake_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Client connections served at once; the next ones get 503.
    pub max_connections: usize,
    /// Executor threads.
    pub threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            head_timeout: Duration::from_secs(20),
            keep_alive_idle: Duration::from_secs(75),
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(330),
            body_idle: Duration::from_secs(120),
            tunnel_idle: Duration::from_secs(15 * 60),
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 4096,
            threads: 1,
        }
    }
}

impl UpstreamUrl {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let bad = |problem: &str| ConfigError::Flag {
            flag: "--upstream",
            problem: format!("{raw:?}: {problem}"),
            fix:
                "write it as http://HOST:PORT, e.g. http://127.0.0.1:8200 or http://duplicati:8200"
                    .into(),
        };
        let rest = raw.strip_prefix("http://").ok_or_else(|| {
            if raw.starts_with("https://") {
                bad("Duplicati's own HTTPS is not supported behind the gate; point the gate at its plain HTTP port")
            } else {
                bad("not an http:// URL")
            }
        })?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "a path, query or user name is not supported; Duplicati serves from /",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port.parse::<u16>().map_err(|_| bad("invalid port"))?;
                (host, port)
            }
            _ => (authority, 80),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(UpstreamUrl {
            host: host.to_owned(),
            port,
            origin: format!("http://{authority}"),
        })
    }
}

fn socket_addr(flag: &'static str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse().map_err(|_| ConfigError::Flag {
        flag,
        problem: format!("{raw:?} is not an IP address with a port"),
        fix: "write it as IP:PORT, e.g. 0.0.0.0:8443, 127.0.0.1:8443 or [::]:8443".into(),
    })
}

impl Config {
    pub fn from_args(args: &GateArgs) -> Result<Config, ConfigError> {
        let listen = socket_addr("--listen", &args.listen)?;
        let upstream = UpstreamUrl::parse(&args.upstream)?;
        let redirect_http = args
            .redirect_http
            .as_deref()
            .map(|raw| socket_addr("--redirect-http", raw))
            .transpose()?;
        let cert = match (&args.cert, &args.key, &args.pkcs12) {
            (Some(cert), Some(key), None) => CertChoice::Given(CertSource::Pem {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None, Some(file)) => CertChoice::Given(CertSource::Pkcs12 {
                file: file.clone(),
                password_file: args.pkcs12_password_file.clone(),
            }),
            (None, None, None) => CertChoice::SelfSigned {
                dir: state_dir(args.state_dir.as_ref())?,
                names: selfsigned::default_names(&listen, &args.self_signed_name),
            },
            (Some(_), None, None) | (None, Some(_), None) => return Err(ConfigError::Flag {
                flag: "--cert/--key",
                problem: "one given without the other".into(),
                fix:
                    "pass both --cert FILE and --key FILE, or neither for a self-signed certificate"
                        .into(),
            }),
            _ => {
                return Err(ConfigError::Flag {
                    flag: "--pkcs12",
                    problem: "given together with --cert/--key".into(),
                    fix: "pass either --pkcs12 FILE or --cert FILE --key FILE".into(),
                })
            }
        };
        if args.pkcs12_password_file.is_some() && args.pkcs12.is_none() {
            return Err(ConfigError::Flag {
                flag: "--pkcs12-password-file",
                problem: "given without --pkcs12".into(),
                fix: "add --pkcs12 FILE, or drop the password file".into(),
            });
        }
        if args.threads == 0 || args.threads > 64 {
            return Err(ConfigError::Flag {
                flag: "--threads",
                problem: format!("{} threads", args.threads),
                fix: "use 1 to 64; the default 1 suits a home server".into(),
            });
        }
        if args.max_connections == 0 {
            return Err(ConfigError::Flag {
                flag: "--max-connections",
                problem: "0 would refuse everyone".into(),
                fix: "use a positive number; the default is 4096".into(),
            });
        }
        if args.head_timeout == 0 {
            return Err(ConfigError::Flag {
                flag: "--head-timeout",
                problem: "0 seconds would refuse every request".into(),
                fix: "use a few seconds; the default is 20".into(),
            });
        }
        if args.upstream_timeout == 0 {
            return Err(ConfigError::Flag {
                flag: "--upstream-timeout",
                problem: "0 seconds would answer every request with 504".into(),
                fix: "use 300 or more; the default is 330".into(),
            });
        }
        let mut warnings = Vec::new();
        if args.upstream_timeout < 300 {
            warnings.push(format!(
                "--upstream-timeout {}: shorter than Duplicati 2.0's 299 s long-poll, whose requests will get 504 \
                 (use 300 or more; the default is 330)",
                args.upstream_timeout
            ));
        }
        let limits = Limits {
            head_timeout: Duration::from_secs(args.head_timeout),
            response_timeout: Duration::from_secs(args.upstream_timeout),
            max_connections: args.max_connections,
            threads: args.threads,
            ..Limits::default()
        };
        let access = access_config(args, matches!(cert, CertChoice::Given(_)))?;
        Ok(Config {
            listen,
            upstream,
            cert,
            redirect_http,
            https_port: args.https_port.unwrap_or(listen.port()),
            limits,
            access,
            warnings,
        })
    }
}

fn access_config(args: &GateArgs, own_certificate: bool) -> Result<AccessConfig, ConfigError> {
    let allow = args
        .allow
        .iter()
        .map(|raw| {
            raw.parse().map_err(|problem| ConfigError::Flag {
                flag: "--allow",
                problem,
                fix: "write a CIDR range such as 192.168.1.0/24, fd00::/64, or one address".into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if args.revoked.is_some() && args.client_ca.is_none() {
        return Err(ConfigError::Flag {
            flag: "--revoked",
            problem: "given without --client-ca".into(),
            fix: "add --client-ca FILE; the revocation list applies to client certificates".into(),
        });
    }
    let preauth_token = match &args.preauth_token_file {
        None => None,
        Some(_) if args.client_ca.is_none() => {
            return Err(ConfigError::Flag {
                flag: "--preauth-token-file",
                problem: "given without --client-ca: every visitor would be logged in".into(),
                fix: "add --client-ca FILE so only your devices get the token".into(),
            })
        }
        Some(path) => Some(read_preauth_token(path)?),
    };
    Ok(AccessConfig {
        allow: AllowList(allow),
        client_ca: args.client_ca.clone().map(|ca| (ca, args.revoked.clone())),
        preauth_token,
        login_attempts: args.login_attempts,
        // HSTS with the self-signed default would lock the browser out of its click-through.
        hsts: own_certificate && !args.no_hsts,
    })
}

/// Duplicati accepts pre-auth tokens of at least 10 characters from `[A-Za-z0-9_-]`
/// (WebserverCore/Services/PreAuthTokenHandler.cs).
fn read_preauth_token(path: &std::path::Path) -> Result<String, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
        what: "pre-auth token file",
        path: path.to_owned(),
        source,
    })?;
    let token = raw.trim();
    if token.len() < 10
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::Content {
            what: "pre-auth token file",
            path: path.to_owned(),
            problem: "the token must be at least 10 characters of A-Z, a-z, 0-9, '_' or '-'".into(),
            fix: "put the same token in this file and in Duplicati's --webservice-pre-auth-tokens",
        });
    }
    Ok(token.to_owned())
}

pub fn state_dir(given: Option<&PathBuf>) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = given {
        return Ok(dir.clone());
    }
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(state) = from_env("XDG_STATE_HOME") {
        return Ok(state.join("duplicati-gate"));
    }
    if let Some(home) = from_env("HOME") {
        return Ok(home.join(".local/state/duplicati-gate"));
    }
    Err(ConfigError::Flag {
        flag: "--state-dir",
        problem: "no state directory: neither XDG_STATE_HOME nor HOME is set".into(),
        fix: "pass --state-dir DIR (a writable directory for the self-signed certificate)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_urls() {
        let url = UpstreamUrl::parse("http://duplicati:8200/").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.origin.as_str()),
            ("duplicati", 8200, "http://duplicati:8200")
        );
        let url = UpstreamUrl::parse("http://[::1]:8200").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 8200));
        assert_eq!(UpstreamUrl::parse("http://nas").unwrap().port, 80);
        for bad in [
            "https://nas:8200",
            "nas:8200",
            "http://nas:8200/duplicati",
            "http://:8200",
            "http://nas:99999",
        ] {
            let err = UpstreamUrl::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("--upstream") && err.contains("http://HOST:PORT"),
                "{err}"
            );
        }
    }

    fn args(extra: &[&str]) -> GateArgs {
        use argh::FromArgs;
        GateArgs::from_args(&["duplicati-gate"], extra).unwrap()
    }

    #[test]
    fn names_the_fix_for_bad_flags() {
        let err = Config::from_args(&args(&["--listen", "8443"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--listen") && err.contains("0.0.0.0:8443"),
            "{err}"
        );
        let err = Config::from_args(&args(&["--cert", "c.pem"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pass both --cert FILE and --key FILE"),
            "{err}"
        );
        let config =
            Config::from_args(&args(&["--upstream-timeout", "60", "--state-dir", "/x"])).unwrap();
        assert!(
            config.warnings[0].contains("299 s long-poll"),
            "{:?}",
            config.warnings
        );
        let err = Config::from_args(&args(&["--allow", "192.168.1/24"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow") && err.contains("CIDR"), "{err}");
        let err = Config::from_args(&args(&["--preauth-token-file", "t", "--state-dir", "/x"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("every visitor would be logged in"), "{err}");
    }

    #[test]
    fn defaults_to_a_self_signed_certificate_and_the_listen_port_for_redirects() {
        let config = Config::from_args(&args(&[
            "--listen",
            "127.0.0.1:9443",
            "--state-dir",
            "/tmp/s",
        ]))
        .unwrap();
        assert_eq!(config.https_port, 9443);
        match config.cert {
            CertChoice::SelfSigned { dir, names } => {
                assert_eq!(dir, PathBuf::from("/tmp/s"));
                assert!(
                    names.contains(&"localhost".to_string())
                        && names.contains(&"127.0.0.1".to_string())
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
