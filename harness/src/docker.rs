//! The Docker CLI for what testcontainers does not do: preflight, networks with a fixed bridge
//! name, inspection, logs, and removal of leftovers from a crashed run.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Context, Error, Result};

/// Label on every container and network the harness creates; stale-object cleanup removes
/// only what carries it.
pub const LABEL: &str = "dgate.harness";

/// The gate's image as `just image` builds it.
pub const GATE_IMAGE: &str = "duplicati-gate:e2e";
/// The stand-in's image as `just image` builds it.
pub const STANDIN_IMAGE: &str = "duplicati-standin:e2e";

/// Runs `docker ARGS`, returning stdout; a failure carries the command line and stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "cannot run `docker {}` (is the docker CLI installed?)",
                args.join(" ")
            )
        })?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a host command (ip, chown), failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program} {}`", args.join(" ")))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks everything the end-to-end tests need before anything starts, so a missing image is
/// reported here and never reaches testcontainers (which pulls on a 404 from create, and no
/// registry is reachable).
pub fn preflight(images: &[&str]) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        crate::bail!(
            "the end-to-end tests need root (network namespaces, veth pairs, packet capture, the \
             Docker socket); euid is {euid}: run `sudo just e2e`"
        );
    }
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    if !Path::new(&socket).exists() {
        crate::bail!(
            "no Docker socket at {socket}: start the Docker engine (dockerd) or set DOCKER_HOST"
        );
    }
    let version = docker(&[
        "version",
        "--format",
        "{{.Server.Version}} API {{.Server.APIVersion}}",
    ])
    .context("the Docker engine does not answer: is dockerd running?")?;
    let mut missing = Vec::new();
    for image in images {
        if docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
            missing.push(*image);
        }
    }
    if !missing.is_empty() {
        crate::bail!(
            "image(s) not present locally: {} (engine {}). No registry is used and nothing is \
             pulled: run `just image` to build duplicati-gate:e2e and duplicati-standin:e2e; \
             with DUPLICATI_IMAGE set, load that image first (`docker load`, or `docker pull` on \
             a machine with a registry)",
            missing.join(", "),
            version.trim()
        );
    }
    Ok(())
}

static SESSION: OnceLock<Result<File, String>> = OnceLock::new();

/// Takes the machine-wide harness lock for the life of the process, then removes what a crashed
/// earlier run left behind. With the lock held no other harness runs, so every labelled container
/// and network, and every `dgate-` namespace and veth, is a leftover.
pub fn begin_session() -> Result<()> {
    let session = SESSION.get_or_init(|| {
        let path = "/run/lock/dgate-e2e.lock";
        let file = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
        // SAFETY: flock on an fd we own; blocks until another harness process exits.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "cannot lock {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
        remove_leftovers().map_err(|e| e.to_string())?;
        Ok(file)
    });
    match session {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::msg(e.clone())),
    }
}

fn remove_leftovers() -> Result<()> {
    let filter = format!("label={LABEL}");
    let containers = docker(&["ps", "-aq", "--filter", &filter])?;
    for id in containers.split_whitespace() {
        eprintln!("harness: removing leftover container {id}");
        docker(&["rm", "-f", "-v", id])?;
    }
    let networks = docker(&["network", "ls", "-q", "--filter", &filter])?;
    for id in networks.split_whitespace() {
        eprintln!("harness: removing leftover network {id}");
        docker(&["network", "rm", id])?;
    }
    for ns in run("ip", &["netns", "list"])?.lines() {
        let name = ns.split_whitespace().next().unwrap_or("");
        if name.starts_with("dgate-cli") {
            eprintln!("harness: removing leftover network namespace {name}");
            run("ip", &["netns", "del", name])?;
        }
    }
    for line in run("ip", &["-o", "link", "show"])?.lines() {
        // "12: dgate-h3@if11: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with("dgate-h") || name.starts_with("dgate-c") {
            eprintln!("harness: removing leftover link {name}");
            run("ip", &["link", "del", name])?;
        }
    }
    Ok(())
}

/// A user-defined bridge network with a fixed interface name, so the sniffer can open it.
/// Removed on drop.
pub struct Network {
    pub name: String,
    pub bridge: String,
}

impl Network {
    pub fn create(name: &str, bridge: &str, subnet: &str) -> Result<Network> {
        docker(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--label",
            LABEL,
            "--subnet",
            subnet,
            "-o",
            &format!("com.docker.network.bridge.name={bridge}"),
            name,
        ])?;
        Ok(Network {
            name: name.to_owned(),
            bridge: bridge.to_owned(),
        })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = docker(&["network", "rm", &self.name]) {
            eprintln!("harness: cannot remove network {}: {e}", self.name);
        }
    }
}

/// The container's address on `network`.
pub fn container_ip(container: &str, network: &str) -> Result<std::net::Ipv4Addr> {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let out = docker(&["inspect", "--format", &format, container])?;
    out.trim()
        .parse()
        .with_context(|| format!("container {container} has no IPv4 address on {network}: {out:?}"))
}

/// Everything the container wrote to stdout and stderr, for failure reports.
pub fn logs(container: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", "--timestamps", container])
        .output();
    match out {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("(cannot read logs of {container}: {e})"),
    }
}

/// Splits `repo/name:tag` (a registry host may carry a port, so the tag is after the last `/`).
pub fn split_image(image: &str) -> (String, String) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => (
            image[..slash + colon].to_owned(),
            image[slash + colon + 1..].to_owned(),
        ),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn splits_tag_after_the_last_slash() {
        assert_eq!(
            split_image("duplicati/duplicati:2.3.0.4"),
            ("duplicati/duplicati".into(), "2.3.0.4".into())
        );
        assert_eq!(
            split_image("registry:5000/duplicati"),
            ("registry:5000/duplicati".into(), "latest".into())
        );
        assert_eq!(
            split_image("duplicati-gate:e2e"),
            ("duplicati-gate".into(), "e2e".into())
        );
    }
}
