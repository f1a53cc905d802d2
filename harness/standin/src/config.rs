//! Raw command line and environment in, checked `Config` out.
//!
//! Duplicati takes its server options as `--name=value`, and since 2.1 every option `--foo-bar` can
//! also come from the environment as `DUPLICATI__FOO_BAR`; the command line wins.
//! // Duplicati/Server/Program.cs (ApplyEnvironmentVariables), Duplicati/Server/WebServerLoader.cs

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
duplicati-standin: a protocol-faithful stand-in for Duplicati's web server (tests only)

Options take Duplicati's form --name=value. Every option --foo-bar may also be given as the
environment variable DUPLICATI__FOO_BAR; the command line wins.

  --webservice-port=PORT                listen port (default 8200; 0 picks a free port)
  --webservice-interface=IF             loopback (default) | any | all | * | an IP address
  --webservice-password=PW              UI password (2.3: none => a random one and a signin link)
  --webservice-allowed-hostnames=A;B    extra allowed Host names; * disables the check
                                        (alias --webservice-allowedhostnames)
  --webservice-pre-auth-tokens=T1;T2    tokens accepted as `Authorization: PreAuth <t>`
  --webservice-token-duration=30D       refresh token lifetime (s, m, h, D, W suffixes)
  --webservice-disable-signin-tokens    refuse /api/v1/auth/signin and issuesignintoken
  --webservice-api-only                 serve no static files
  --settings-encryption-key=KEY         accepted and unused (env SETTINGS_ENCRYPTION_KEY)
  --legacy-2.0 | --profile=2.0          behave like Duplicati 2.0.8 (login.cgi, XSRF, long poll,
                                        /files/<path>); default --profile=2.3
  --record-requests                     keep raw request heads; GET/DELETE /__standin/requests
  --bulk-endpoints                      GET/POST /__standin/bulk: generated and hashed bulk bytes
                                        for the soak test (not Duplicati behaviour)
  --data-dir=DIR                        where the stand-in keeps its state (default /data, or a
                                        temporary folder when /data is not writable)
  --help                                this text

Once listening it prints: Server has started and is listening on <*|localhost|ip>, port <p>
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Kestrel/ASP.NET server with JWT auth, 2.2/2.3 behaviour.
    Current,
    /// The 2.0.8 HttpServer: login.cgi, session-auth cookie, XSRF, long poll, /files/<path>.
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Any,
    Loopback,
    Ip(IpAddr),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub interface: Interface,
    pub password: Option<String>,
    pub allowed_hostnames: Vec<String>,
    pub pre_auth_tokens: Vec<String>,
    pub refresh_duration: Duration,
    pub disable_signin_tokens: bool,
    pub api_only: bool,
    pub encryption_key_set: bool,
    pub profile: Profile,
    pub record_requests: bool,
    /// `/__standin/bulk` for harness/soak (bulk.rs).
    pub bulk_endpoints: bool,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug)]
pub enum ConfigError {
    Help,
    BadValue {
        option: String,
        value: String,
        fix: &'static str,
    },
    NotAnOption(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help => f.write_str(USAGE),
            ConfigError::BadValue { option, value, fix } => {
                write!(f, "invalid value {value:?} for --{option}: {fix}")
            }
            ConfigError::NotAnOption(arg) => write!(
                f,
                "unexpected argument {arg:?}: options look like --name=value (see --help)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Options Duplicati accepts that the stand-in takes and ignores, so that a command line written
/// for the real server also starts the stand-in.
const IGNORED: &[&str] = &[
    "server-datafolder",
    "require-db-encryption-key",
    "disable-db-encryption",
    "webservice-timezone",
    "webservice-spa-paths",
    "webservice-webroot",
    "webservice-cors-origins",
    "webservice-disable-https",
    "webservice-remove-sslcertificate",
    "webservice-reset-jwt-config",
    "webservice-enable-forever-token",
    "log-level",
    "log-file",
    "console-log-level",
    "tempdir",
];

impl Config {
    /// `args` without the program name; `env` as (name, value) pairs.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut opts: BTreeMap<String, String> = BTreeMap::new();
        let mut warnings = Vec::new();
        let mut encryption_key_set = false;
        // Duplicati/Server/Program.cs (ApplyEnvironmentVariables): DUPLICATI__FOO_BAR => --foo-bar.
        for (name, value) in env {
            if name == "SETTINGS_ENCRYPTION_KEY" && !value.is_empty() {
                encryption_key_set = true;
            } else if let Some(rest) = name.strip_prefix("DUPLICATI__") {
                opts.insert(rest.to_ascii_lowercase().replace('_', "-"), value);
            }
        }
        for arg in args {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ConfigError::NotAnOption(arg));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), v.to_string()),
                None => (body.to_ascii_lowercase(), "true".to_string()),
            };
            opts.insert(name, value);
        }
        if opts.contains_key("help") {
            return Err(ConfigError::Help);
        }
        if opts.remove("legacy-2.0").is_some() {
            opts.entry("profile".into()).or_insert_with(|| "2.0".into());
        }
        let mut cfg = Config {
            port: 8200,
            interface: Interface::Loopback,
            password: None,
            allowed_hostnames: Vec::new(),
            pre_auth_tokens: Vec::new(),
            refresh_duration: Duration::from_secs(30 * 24 * 3600),
            disable_signin_tokens: false,
            api_only: false,
            encryption_key_set,
            profile: Profile::Current,
            record_requests: false,
            bulk_endpoints: false,
            data_dir: None,
        };
        for (name, value) in opts {
            match name.as_str() {
                // Duplicati/Server/WebServerLoader.cs (TryRunServerAsync): a comma list is tried in
                // order; the stand-in takes the first entry.
                "webservice-port" => {
                    let first = value.split(',').next().unwrap_or("").trim();
                    cfg.port = first
                        .parse()
                        .map_err(|_| bad(&name, &value, "give a port number 0-65535"))?;
                }
                // Duplicati/Server/WebServerLoader.cs: "*", "all", "any" => IPAddress.Any,
                // "loopback" => IPAddress.Loopback, else IPAddress.Parse.
                "webservice-interface" => {
                    let v = value.trim();
                    cfg.interface = if ["*", "all", "any"]
                        .iter()
                        .any(|x| x.eq_ignore_ascii_case(v))
                    {
                        Interface::Any
                    } else if v.is_empty() || v == "loopback" {
                        Interface::Loopback
                    } else {
                        Interface::Ip(v.parse().map_err(|_| {
                            bad(&name, &value, "use loopback, any, or an IP address")
                        })?)
                    };
                }
                "webservice-password" => {
                    // Duplicati/Server/Program.cs: an empty password is refused ("Disabling
                    // password protection is not supported").
                    if value.is_empty() {
                        return Err(bad(&name, &value, "Disabling password protection is not supported; give a non-empty password"));
                    }
                    cfg.password = Some(value);
                }
                // Duplicati/WebserverCore/Services/HostnameValidator.cs: ';'-separated list.
                "webservice-allowed-hostnames" | "webservice-allowedhostnames" => {
                    cfg.allowed_hostnames = split_list(&value);
                }
                // Duplicati/WebserverCore/Services/PreAuthTokenHandler.cs: >= 10 chars of
                // [A-Za-z0-9_-], ';'-separated.
                "webservice-pre-auth-tokens" => {
                    let tokens = split_list(&value);
                    if let Some(t) = tokens.iter().find(|t| {
                        t.len() < 10
                            || !t
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    }) {
                        return Err(bad(
                            &name,
                            t,
                            "pre-auth tokens need at least 10 characters of A-Z a-z 0-9 _ -",
                        ));
                    }
                    cfg.pre_auth_tokens = tokens;
                }
                "webservice-token-duration" => {
                    cfg.refresh_duration = crate::timeparse::parse_timespan(&value)
                        .ok_or_else(|| bad(&name, &value, "use a duration such as 30D or 12h"))?;
                }
                "webservice-disable-signin-tokens" => {
                    cfg.disable_signin_tokens = parse_bool(&value)
                }
                "webservice-api-only" => cfg.api_only = parse_bool(&value),
                "settings-encryption-key" => cfg.encryption_key_set |= !value.is_empty(),
                "profile" => {
                    cfg.profile = match value.as_str() {
                        "2.0" | "legacy" => Profile::Legacy,
                        "2.3" | "2.2" | "current" => Profile::Current,
                        _ => return Err(bad(&name, &value, "use 2.0 or 2.3")),
                    }
                }
                "record-requests" => cfg.record_requests = parse_bool(&value),
                "bulk-endpoints" => cfg.bulk_endpoints = parse_bool(&value),
                "data-dir" => cfg.data_dir = Some(PathBuf::from(value)),
                other if IGNORED.contains(&other) => {}
                other => warnings.push(format!(
                    "warning: option --{other} is not modelled by the stand-in and is ignored"
                )),
            }
        }
        Ok((cfg, warnings))
    }
}

fn bad(option: &str, value: &str, fix: &'static str) -> ConfigError {
    ConfigError::BadValue {
        option: option.to_string(),
        value: value.to_string(),
        fix,
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

// Duplicati/Library/Utility/Utility.cs (ParseBool): empty counts as true for a flag option.
fn parse_bool(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "1" | "on" | "true" | "yes"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Config {
        Config::parse(
            args.iter().map(|s| s.to_string()),
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
        .map(|(c, _)| c)
        .unwrap_or_else(|e| panic!("parse failed: {e}"))
    }

    #[test]
    fn cli_wins_over_env() {
        let c = parse(
            &["--webservice-port=9000", "--webservice-password=cli"],
            &[
                ("DUPLICATI__WEBSERVICE_PORT", "8300"),
                ("DUPLICATI__WEBSERVICE_PASSWORD", "env"),
                (
                    "DUPLICATI__WEBSERVICE_ALLOWEDHOSTNAMES",
                    "a.example;b.example",
                ),
                ("DUPLICATI__WEBSERVICE_INTERFACE", "any"),
            ],
        );
        assert_eq!(c.port, 9000);
        assert_eq!(c.password.as_deref(), Some("cli"));
        assert_eq!(c.allowed_hostnames, ["a.example", "b.example"]);
        assert_eq!(c.interface, Interface::Any);
    }

    #[test]
    fn legacy_flag_and_short_tokens() {
        assert_eq!(parse(&["--legacy-2.0"], &[]).profile, Profile::Legacy);
        assert_eq!(parse(&["--profile=2.0"], &[]).profile, Profile::Legacy);
        assert!(Config::parse(
            ["--webservice-pre-auth-tokens=short".to_string()],
            std::iter::empty()
        )
        .is_err());
    }
}
