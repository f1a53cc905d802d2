//! `soak`: load and soak test of duplicati-gate in front of the Duplicati stand-in. Exit 0 when the
//! report's verdict is PASS, 1 when it is not or the run could not be made, 2 for bad flags.

mod bulk;
mod cli;
mod conn;
mod load;
mod pattern;
mod probe;
mod procs;
mod report;
mod run;
mod sockets;
mod stats;
mod tls;
mod ws;

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: cli::Args = argh::from_env();
    let config = match cli::Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let outcome = match run::run(config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(1);
        }
    };
    let (text, failures) = report::render(&outcome, started.elapsed().as_secs_f64());
    print!("{text}");
    if failures.is_empty() {
        // The logs are only worth keeping when something needs explaining.
        let _ = std::fs::remove_dir_all(&outcome.dir);
        ExitCode::SUCCESS
    } else {
        println!("logs kept in {}", outcome.dir.display());
        ExitCode::from(1)
    }
}
