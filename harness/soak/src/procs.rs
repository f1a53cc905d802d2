//! The stand-in and the gate as host processes: started with their output in files, ready when
//! they print their listening line, stopped by PID (also when the soak fails or panics).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

pub struct Proc {
    pub name: &'static str,
    pub pid: u32,
    child: Child,
    pub log: PathBuf,
    stopped: bool,
}

impl Proc {
    /// Starts `cmd` with stderr and stdout in `dir/NAME.log` and waits until a stdout line makes
    /// `ready` return something, or `deadline` passes, or the process exits.
    pub fn start<T>(
        name: &'static str,
        mut cmd: Command,
        dir: &Path,
        deadline: Instant,
        ready: impl Fn(&str) -> Option<T>,
    ) -> Result<(Proc, T), String> {
        let log = dir.join(format!("{name}.log"));
        let err_file =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut out_file = err_file
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel::<String>();
        // Drains stdout for the life of the process so a full pipe never blocks it.
        thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = writeln!(out_file, "{line}");
                let _ = tx.send(line);
            }
        });
        let mut proc = Proc {
            name,
            pid,
            child,
            log,
            stopped: false,
        };
        loop {
            match rx.recv_timeout(POLL) {
                Ok(line) => {
                    if let Some(v) = ready(&line) {
                        return Ok((proc, v));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "{name} closed its output before it was ready; see {}",
                        proc.log.display()
                    ))
                }
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                proc.stopped = true;
                return Err(format!(
                    "{name} exited ({status}) before it was ready; see {}",
                    proc.log.display()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} printed no ready line in time; see {}",
                    proc.log.display()
                ));
            }
        }
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; says how it ended.
    pub fn stop(&mut self, grace: Duration) -> String {
        if self.stopped {
            return format!("{} had already exited", self.name);
        }
        self.stopped = true;
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return format!("{} stopped by SIGTERM ({status})", self.name),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                _ => break,
            }
        }
        signal(self.pid, libc::SIGKILL);
        let _ = self.child.wait();
        format!(
            "{} did not stop within {grace:?} of SIGTERM; killed",
            self.name
        )
    }

    /// Still running (not exited)?
    pub fn alive(&mut self) -> bool {
        !self.stopped && matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.stopped {
            signal(self.pid, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) on the PID of a child we spawned and have not yet reaped, so the PID cannot
    // have been reused by another process.
    unsafe {
        libc::kill(pid, sig);
    }
}
