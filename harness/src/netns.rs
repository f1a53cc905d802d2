//! The client's own network namespace, joined to the host by a veth pair: the host end is the
//! only interface that carries the client-to-gate leg, so it is where "leaves the host" is judged
//! (containers.md §5.2: loopback and the Docker bridge also carry the plaintext hop).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use crate::docker::run;
use crate::error::{Context, Error, Result};

pub struct ClientNs {
    pub name: String,
    /// The veth end on the host; the gate is published on its address only.
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub client_ip: Ipv4Addr,
}

impl ClientNs {
    /// `dgate-cli<n>` with `dgate-h<n>` (host, 10.213.n.1/30) and `dgate-c<n>` (client,
    /// 10.213.n.2/30); 10.213/16 is outside Docker's default pools (172.17-31, 192.168).
    pub fn create(n: u8) -> Result<ClientNs> {
        let ns = ClientNs {
            name: format!("dgate-cli{n}"),
            host_if: format!("dgate-h{n}"),
            host_ip: Ipv4Addr::new(10, 213, n, 1),
            client_ip: Ipv4Addr::new(10, 213, n, 2),
        };
        let client_if = format!("dgate-c{n}");
        run("ip", &["netns", "add", &ns.name])?;
        // From here on Drop removes the namespace (and with it the client end of the veth).
        let host_cidr = format!("{}/30", ns.host_ip);
        let client_cidr = format!("{}/30", ns.client_ip);
        let host_ip = ns.host_ip.to_string();
        // Docker has already enabled ip_forward; the host end only routes.
        let steps: [(&str, Vec<&str>); 8] = [
            (
                "ip",
                vec![
                    "link",
                    "add",
                    &ns.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &client_if,
                ],
            ),
            ("ip", vec!["link", "set", &client_if, "netns", &ns.name]),
            ("ip", vec!["addr", "add", &host_cidr, "dev", &ns.host_if]),
            ("ip", vec!["link", "set", &ns.host_if, "up"]),
            (
                "ip",
                vec![
                    "-n",
                    &ns.name,
                    "addr",
                    "add",
                    &client_cidr,
                    "dev",
                    &client_if,
                ],
            ),
            ("ip", vec!["-n", &ns.name, "link", "set", &client_if, "up"]),
            ("ip", vec!["-n", &ns.name, "link", "set", "lo", "up"]),
            (
                "ip",
                vec!["-n", &ns.name, "route", "add", "default", "via", &host_ip],
            ),
        ];
        for (program, args) in &steps {
            run(program, args)?;
        }
        Ok(ns)
    }

    /// Runs `f` on a fresh thread that has joined this namespace (network namespaces are per
    /// thread, so only that thread's sockets are the client's). A panic in `f` is re-raised here.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("cannot open {path}"))?;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("{}-client", self.name))
                .spawn_scoped(scope, move || {
                    // SAFETY: setns on an fd we own; affects only this thread.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(Error::msg(format!(
                            "setns({path}): {}",
                            std::io::Error::last_os_error()
                        )));
                    }
                    Ok(f())
                })
                .context("cannot spawn the client thread")?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for ClientNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys the client end, which takes the host end with it;
        // delete the host end explicitly too in case the namespace step failed half-way.
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("harness: cannot delete namespace {}: {e}", self.name);
        }
        // The kernel tears a namespace down asynchronously, so the link may vanish between the
        // check and the delete; only one that is still there afterwards is worth reporting.
        if run("ip", &["link", "show", &self.host_if]).is_ok() {
            if let Err(e) = run("ip", &["link", "del", &self.host_if]) {
                if run("ip", &["link", "show", &self.host_if]).is_ok() {
                    eprintln!("harness: cannot delete link {}: {e}", self.host_if);
                }
            }
        }
    }
}
