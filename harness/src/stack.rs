//! One end-to-end deployment: network, Duplicati, the gate, the client namespace; and the test
//! runner that tears it down, or keeps its files and prints its logs when a check fails.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use crate::certs::TestCerts;
use crate::client::Endpoint;
use crate::docker::{self, Network, GATE_IMAGE};
use crate::duplicati::{Duplicati, DuplicatiOptions, Flavor};
use crate::error::{Context, Result};
use crate::gate::{Gate, HTTPS_PORT, HTTP_PORT};
use crate::netns::ClientNs;
use crate::sniffer::Capture;

/// The name the client uses for the gate: certificate SAN, SNI and Host.
pub const GATE_HOST: &str = "gate.test";

static NEXT_ID: AtomicU8 = AtomicU8::new(1);

pub struct StackOptions {
    pub flavor: Flavor,
    /// `DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES`.
    pub allowed_hostnames: String,
    /// Start the gate (off only for the deliberate bypass).
    pub gate: bool,
    /// Publish Duplicati's plain HTTP on the veth address: the deliberate bypass.
    pub publish_duplicati: bool,
    /// A client CA (PEM) on the host: the gate then serves only devices it signed
    /// (`--client-ca`).
    pub client_ca: Option<PathBuf>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            flavor: Flavor::from_env(),
            allowed_hostnames: GATE_HOST.to_owned(),
            gate: true,
            publish_duplicati: false,
            client_ca: None,
        }
    }
}

/// A scratch folder, removed on drop unless a failure asked to keep it.
pub struct Workdir {
    pub path: PathBuf,
    keep: AtomicBool,
}

impl Workdir {
    fn create(id: u8) -> Result<Workdir> {
        let path = std::env::temp_dir().join(format!("dgate-e2e-{}-{id}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot clear {}", path.display()))?;
        }
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Workdir {
            path,
            keep: AtomicBool::new(false),
        })
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::SeqCst) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Field order is teardown order: containers before their network, the workdir last.
pub struct Stack {
    pub id: u8,
    pub password: String,
    pub gate: Option<Gate>,
    pub duplicati: Duplicati,
    pub client_ns: ClientNs,
    pub network: Network,
    pub certs: Option<TestCerts>,
    pub workdir: Workdir,
}

impl Stack {
    pub fn start(opts: StackOptions) -> Result<Stack> {
        let mut images = vec![opts.flavor.image().to_owned()];
        if opts.gate {
            images.push(GATE_IMAGE.to_owned());
        }
        let images: Vec<&str> = images.iter().map(String::as_str).collect();
        docker::preflight(&images)?;
        docker::begin_session()?;

        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        crate::ensure!(
            (1..=250).contains(&id),
            "too many stacks in one process ({id})"
        );
        let workdir = Workdir::create(id)?;
        let network = Network::create(
            &format!("dgate-net{id}"),
            &format!("dgate-br{id}"),
            &format!("10.214.{id}.0/24"),
        )?;
        let client_ns = ClientNs::create(id)?;
        let password = crate::random::password()?;
        let duplicati_name = format!("dgate-duplicati{id}");
        let duplicati = Duplicati::start(
            &duplicati_name,
            &network.name,
            &workdir.path,
            &DuplicatiOptions {
                flavor: opts.flavor.clone(),
                password: password.clone(),
                allowed_hostnames: opts.allowed_hostnames.clone(),
                publish_on: opts.publish_duplicati.then_some(client_ns.host_ip),
            },
        )?;
        let (certs, gate) = if opts.gate {
            let certs = TestCerts::generate(
                &workdir.path.join("certs"),
                GATE_HOST,
                IpAddr::V4(client_ns.host_ip),
            )?;
            let mut extra_args = Vec::new();
            if let Some(ca) = &opts.client_ca {
                let mounted = certs.dir.join("client-ca.pem");
                std::fs::copy(ca, &mounted).with_context(|| {
                    format!("cannot copy {} into the gate's certs", ca.display())
                })?;
                crate::certs::chown(&mounted, crate::certs::CONTAINER_UID)?;
                extra_args = vec!["--client-ca".to_owned(), "/certs/client-ca.pem".to_owned()];
            }
            let gate = Gate::start(
                &format!("dgate-gate{id}"),
                &network.name,
                &certs.dir,
                client_ns.host_ip,
                &extra_args,
            )?;
            (Some(certs), Some(gate))
        } else {
            (None, None)
        };
        Ok(Stack {
            id,
            password,
            gate,
            duplicati,
            client_ns,
            network,
            certs,
            workdir,
        })
    }

    /// The gate as the client sees it: `https://gate.test:8443` at the veth address.
    pub fn gate_endpoint(&self) -> Result<Endpoint> {
        let certs = self
            .certs
            .as_ref()
            .ok_or_else(|| crate::Error::msg("this stack has no gate"))?;
        Endpoint::https(
            SocketAddr::from((self.client_ns.host_ip, HTTPS_PORT)),
            &format!("{GATE_HOST}:{HTTPS_PORT}"),
            GATE_HOST,
            certs.client_config()?,
        )
    }

    /// The gate as a device holding a client certificate sees it.
    pub fn gate_endpoint_as(&self, device: &crate::certs::Device) -> Result<Endpoint> {
        let certs = self
            .certs
            .as_ref()
            .ok_or_else(|| crate::Error::msg("this stack has no gate"))?;
        Endpoint::https(
            SocketAddr::from((self.client_ns.host_ip, HTTPS_PORT)),
            &format!("{GATE_HOST}:{HTTPS_PORT}"),
            GATE_HOST,
            certs.client_config_as(device)?,
        )
    }

    /// The gate's plain-HTTP redirect port.
    pub fn redirect_endpoint(&self) -> Endpoint {
        Endpoint::http(
            SocketAddr::from((self.client_ns.host_ip, HTTP_PORT)),
            &format!("{GATE_HOST}:{HTTP_PORT}"),
        )
    }

    /// Duplicati itself, published on the veth address: only with `publish_duplicati`.
    pub fn bypass_endpoint(&self) -> Endpoint {
        let addr = SocketAddr::from((self.client_ns.host_ip, crate::duplicati::PORT));
        Endpoint::http(addr, &addr.to_string())
    }

    /// Runs `f` as the client, inside its namespace.
    pub fn client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.client_ns.run(f)
    }

    /// Captures on the client's veth (everything TCP) and on the Docker bridge (the gate's and
    /// Duplicati's ports), writing `outside.pcap` and `bridge.pcap` into the workdir.
    pub fn start_captures(&self) -> Result<(Capture, Capture)> {
        let dir = self.workdir.path.join("capture");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let outside = Capture::start(
            &self.client_ns.host_if,
            "tcp",
            &dir.join("outside.pcap"),
            false,
        )?;
        let bridge_filter = format!(
            "tcp port {} or tcp port {HTTPS_PORT} or tcp port {HTTP_PORT}",
            crate::duplicati::PORT
        );
        let bridge = Capture::start(
            &self.network.bridge,
            &bridge_filter,
            &dir.join("bridge.pcap"),
            true,
        )?;
        Ok((outside, bridge))
    }

    pub fn keep_artifacts(&self) {
        self.workdir.keep.store(true, Ordering::SeqCst);
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir.path
    }

    /// Everything a failure report needs: container logs, what reached Duplicati, files kept.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        if let Some(gate) = &self.gate {
            out.push_str(&format!(
                "--- gate ({}) log ---\n{}\n",
                gate.name,
                gate.logs()
            ));
        }
        out.push_str(&format!(
            "--- Duplicati ({}, {}) log ---\n{}\n",
            self.duplicati.name,
            self.duplicati.flavor.image(),
            self.duplicati.logs()
        ));
        match self.duplicati.recorded_requests() {
            Ok(Some(requests)) => {
                out.push_str("--- requests as the stand-in received them ---\n");
                for r in requests.iter().rev().take(40).rev() {
                    out.push_str(&format!(
                        "{}  Host: {}\n",
                        r.get("request_line")
                            .and_then(|v| v.as_str())
                            .unwrap_or("?"),
                        r.get("host").and_then(|v| v.as_str()).unwrap_or("?")
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => out.push_str(&format!("(cannot read the stand-in's request log: {e})\n")),
        }
        out
    }
}

/// Runs one end-to-end test: starts a stack, runs `body`, tears everything down. On failure
/// (an `Err` or a panic) the workdir with its pcap files is kept, and the panic message carries
/// the error, the container logs and the paths.
pub fn run(name: &str, opts: StackOptions, body: impl FnOnce(&Stack) -> Result<()>) {
    let started = Instant::now();
    let stack = match Stack::start(opts) {
        Ok(stack) => stack,
        Err(e) => panic!("{name}: cannot set up the end-to-end stack: {e}"),
    };
    let setup = started.elapsed();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| body(&stack)));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic without a message".to_owned()),
        ),
    };
    match failure {
        None => eprintln!(
            "{name}: ok (setup {:.1}s, test {:.1}s, {})",
            setup.as_secs_f64(),
            (started.elapsed() - setup).as_secs_f64(),
            stack.duplicati.flavor.image()
        ),
        Some(message) => {
            stack.keep_artifacts();
            let diagnostics = stack.diagnostics();
            let kept = stack.workdir().display().to_string();
            drop(stack);
            panic!(
                "{name} FAILED: {message}\n\n{diagnostics}\nkept for inspection: {kept} \
                 (capture/*.pcap: open with tcpdump -r or wireshark)"
            );
        }
    }
}
