//! Raw command line in, checked `Config` out.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

/// Load and soak test: the gate in front of the Duplicati stand-in, thousands of keep-alive TLS
/// clients, bulk transfers and WebSockets for a bounded time; prints one report and exits 1 on any
/// error, digest mismatch or descriptor leak.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// seconds of load (default 180)
    #[argh(option, default = "180")]
    pub duration: u64,
    /// keep-alive connections making small API calls (default 2000)
    #[argh(option, default = "2000")]
    pub connections: usize,
    /// longest pause in milliseconds between two small calls on one connection; each pause is
    /// uniform in 0..this (default 4000)
    #[argh(option, default = "4000")]
    pub think_ms: u64,
    /// how many WebSockets on /notifications are held open for the whole run (default 300)
    #[argh(option, default = "300")]
    pub websockets: usize,
    /// parallel download loops of --bulk-mib each (default 2)
    #[argh(option, default = "2")]
    pub downloads: usize,
    /// parallel upload loops of --bulk-mib each (default 2)
    #[argh(option, default = "2")]
    pub uploads: usize,
    /// size of each looping download and upload in MiB (default 256)
    #[argh(option, default = "256")]
    pub bulk_mib: u64,
    /// size of the one download and the one upload whose SHA-256 must match, in MiB (default 1024)
    #[argh(option, default = "1024")]
    pub big_mib: u64,
    /// the gate binary (default target/release/duplicati-gate)
    #[argh(option, default = "PathBuf::from(\"target/release/duplicati-gate\")")]
    pub gate: PathBuf,
    /// the stand-in binary (default target/release/duplicati-standin)
    #[argh(
        option,
        default = "PathBuf::from(\"target/release/duplicati-standin\")"
    )]
    pub standin: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub duration: Duration,
    pub connections: usize,
    pub think_max: Duration,
    pub websockets: usize,
    pub downloads: usize,
    pub uploads: usize,
    pub bulk_size: u64,
    pub big_size: u64,
    pub gate: PathBuf,
    pub standin: PathBuf,
}

/// Bad flags: which one, and what to give instead.
#[derive(Debug)]
pub struct ConfigError {
    pub flag: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.flag, self.problem, self.fix)
    }
}

impl std::error::Error for ConfigError {}

/// The stand-in refuses more than 16 GiB per transfer (its MAX_SIZE).
const MAX_MIB: u64 = 16 * 1024;

impl Config {
    pub fn from_args(a: Args) -> Result<Config, ConfigError> {
        if a.duration < 10 {
            return Err(ConfigError {
                flag: "--duration",
                problem: format!("{} s leaves no time after the ramp-up", a.duration),
                fix: "give at least 10 seconds",
            });
        }
        for (flag, mib) in [("--bulk-mib", a.bulk_mib), ("--big-mib", a.big_mib)] {
            if mib == 0 || mib > MAX_MIB {
                return Err(ConfigError {
                    flag,
                    problem: format!("{mib} MiB"),
                    fix: "give 1 to 16384 MiB (the stand-in's limit)",
                });
            }
        }
        for (flag, path) in [("--gate", &a.gate), ("--standin", &a.standin)] {
            if !path.is_file() {
                return Err(ConfigError {
                    flag,
                    problem: format!("{} does not exist", path.display()),
                    fix: "build it: cargo build --release -p duplicati-gate -p duplicati-standin",
                });
            }
        }
        Ok(Config {
            duration: Duration::from_secs(a.duration),
            connections: a.connections,
            think_max: Duration::from_millis(a.think_ms),
            websockets: a.websockets,
            downloads: a.downloads,
            uploads: a.uploads,
            bulk_size: a.bulk_mib << 20,
            big_size: a.big_mib << 20,
            gate: a.gate,
            standin: a.standin,
        })
    }
}
