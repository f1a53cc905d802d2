//! The command line, as argh structs. `config` turns these into a checked `Config`; nothing past
//! it sees argh.

use std::path::PathBuf;

use argh::{EarlyExit, FromArgs, SubCommand};

/// HTTPS in front of Duplicati's web UI: a TLS-terminating reverse proxy that forwards every
/// request byte for byte.
#[derive(FromArgs, Debug)]
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(Serve),
    Check(Check),
    GenCert(GenCert),
    GenClientCert(GenClientCert),
    Health(Health),
}

/// `serve`: HTTPS in front of Duplicati. `check`: verify what `serve` would use, change nothing.
#[derive(FromArgs, Debug, Clone, PartialEq, Eq)]
pub struct GateArgs {
    /// address to serve HTTPS on (default 0.0.0.0:8443)
    #[argh(option, default = "String::from(\"0.0.0.0:8443\")")]
    pub listen: String,
    /// address of Duplicati's web server (default http://127.0.0.1:8200)
    #[argh(option, default = "String::from(\"http://127.0.0.1:8200\")")]
    pub upstream: String,
    /// certificate chain, PEM, leaf first (with --key)
    #[argh(option)]
    pub cert: Option<PathBuf>,
    /// private key, PEM: PKCS#8, PKCS#1 or SEC1 (with --cert)
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// certificate and key as a PKCS#12 bundle (.pfx/.p12), instead of --cert/--key
    #[argh(option)]
    pub pkcs12: Option<PathBuf>,
    /// file whose first line is the PKCS#12 password
    #[argh(option)]
    pub pkcs12_password_file: Option<PathBuf>,
    /// also answer plain HTTP on this address, redirecting to https
    #[argh(option)]
    pub redirect_http: Option<String>,
    /// the HTTPS port clients use, for redirects (default: the --listen port; 443 behind a
    /// published container port)
    #[argh(option)]
    pub https_port: Option<u16>,
    /// where the self-signed certificate is kept (default $XDG_STATE_HOME/duplicati-gate or
    /// ~/.local/state/duplicati-gate)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// an extra name for the self-signed certificate (repeatable), e.g. backup.lan
    #[argh(option)]
    pub self_signed_name: Vec<String>,
    /// only these client addresses are served (repeatable; CIDR, IPv4 or IPv6, e.g.
    /// 192.168.1.0/24); others get 403
    #[argh(option)]
    pub allow: Vec<String>,
    /// only devices with a certificate signed by this CA (PEM) complete the handshake (see
    /// gen-client-cert)
    #[argh(option)]
    pub client_ca: Option<PathBuf>,
    /// revoked client certificates: one serial number or SHA-256 fingerprint per line; re-read
    /// when it changes
    #[argh(option)]
    pub revoked: Option<PathBuf>,
    /// with --client-ca: add Duplicati's `Authorization: PreAuth <token>` (token in this file) to
    /// requests from verified devices, so they skip Duplicati's password prompt
    #[argh(option)]
    pub preauth_token_file: Option<PathBuf>,
    /// failed logins per client before the gate answers 429 with a growing back-off (default 5;
    /// 0 turns throttling off)
    #[argh(option, default = "5")]
    pub login_attempts: u32,
    /// do not send Strict-Transport-Security (sent by default with your own certificate, never
    /// with the self-signed one)
    #[argh(switch)]
    pub no_hsts: bool,
    /// seconds a client may take to send a request head (default 20)
    #[argh(option, default = "20")]
    pub head_timeout: u64,
    /// seconds to wait for Duplicati's response head (default 330; Duplicati 2.0 long-polls
    /// for 299)
    #[argh(option, default = "330")]
    pub upstream_timeout: u64,
    /// executor threads (default 1: one thread also drives the I/O reactor, so a request never
    /// hops between threads; raise it for many simultaneous TLS handshakes)
    #[argh(option, default = "1")]
    pub threads: usize,
    /// open client connections served at once; more get 503 (default 4096)
    #[argh(option, default = "4096")]
    pub max_connections: usize,
}

/// Serves a subcommand's options with `GateArgs`' parser (argh cannot share one struct between
/// two subcommands).
macro_rules! gate_subcommand {
    ($name:ident, $command:literal, $description:literal) => {
        #[derive(Debug)]
        pub struct $name(pub GateArgs);

        impl FromArgs for $name {
            fn from_args(command_name: &[&str], args: &[&str]) -> Result<Self, EarlyExit> {
                GateArgs::from_args(command_name, args).map($name)
            }

            fn redact_arg_values(
                command_name: &[&str],
                args: &[&str],
            ) -> Result<Vec<String>, EarlyExit> {
                GateArgs::redact_arg_values(command_name, args)
            }
        }

        impl SubCommand for $name {
            const COMMAND: &'static argh::CommandInfo = &argh::CommandInfo {
                name: $command,
                short: &'\0',
                description: $description,
            };
        }
    };
}

gate_subcommand!(Serve, "serve", "serve HTTPS and forward to Duplicati");
gate_subcommand!(
    Check,
    "check",
    "check the certificate, key and upstream as `serve` would, then exit (0 fine, 2 not)"
);

/// make a self-signed certificate and key (key mode 0600)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "gen-cert")]
pub struct GenCert {
    /// a DNS name or IP address the certificate covers (repeatable)
    #[argh(option)]
    pub host: Vec<String>,
    /// directory for cert.pem and key.pem (default: current directory)
    #[argh(option, default = "PathBuf::from(\".\")")]
    pub out: PathBuf,
}

/// make a certificate for one device (a browser-importable PKCS#12), signed by the gate's own
/// client CA (made on first use in the state directory)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "gen-client-cert")]
pub struct GenClientCert {
    /// the device's name, e.g. laptop
    #[argh(option)]
    pub name: String,
    /// where the client CA is kept (default: as for serve)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// directory for NAME.p12 (default: current directory)
    #[argh(option, default = "PathBuf::from(\".\")")]
    pub out: PathBuf,
}

/// exit 0 if a gate answers a TLS handshake (for container health checks; needs no shell)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "health")]
pub struct Health {
    /// the gate's address (default 127.0.0.1:8443)
    #[argh(option, default = "String::from(\"127.0.0.1:8443\")")]
    pub addr: String,
}
