//! Duplicati in a container: the real image when `DUPLICATI_IMAGE` names one, else the stand-in.
//! Configured as Duplicati's Docker README says: password and allowed hostnames through the
//! environment, volumes `/source`, `/backups` and `/data`, readiness on `GET /health`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use testcontainers::bollard::models::PortBinding;
use testcontainers::core::{IntoContainerPort, Mount};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::client::{self, Endpoint, Request};
use crate::docker::{self, LABEL, STANDIN_IMAGE};
use crate::error::{Context, Result};

pub const PORT: u16 = 8200;
/// Upstream Duplicati CI waits up to 60 s for its server (ServerApiIntegrationTests.cs); the
/// stand-in is ready in well under a second.
const READY_DEADLINE: Duration = Duration::from_secs(90);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `duplicati-standin:e2e`, 2.3 profile or the legacy 2.0 one.
    StandIn { legacy: bool },
    /// The image named by `DUPLICATI_IMAGE`.
    Real { image: String },
}

impl Flavor {
    /// The real image if `DUPLICATI_IMAGE` is set, else the stand-in's 2.3 profile.
    pub fn from_env() -> Flavor {
        match std::env::var("DUPLICATI_IMAGE") {
            Ok(image) if !image.trim().is_empty() => Flavor::Real {
                image: image.trim().to_owned(),
            },
            _ => Flavor::StandIn { legacy: false },
        }
    }

    pub fn image(&self) -> &str {
        match self {
            Flavor::StandIn { .. } => STANDIN_IMAGE,
            Flavor::Real { image } => image,
        }
    }

    pub fn is_standin(&self) -> bool {
        matches!(self, Flavor::StandIn { .. })
    }
}

pub struct DuplicatiOptions {
    pub flavor: Flavor,
    pub password: String,
    /// `DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES`, `;`-separated.
    pub allowed_hostnames: String,
    /// Publish 8200 on this host address: only the deliberately plaintext bypass does this.
    pub publish_on: Option<Ipv4Addr>,
}

pub struct Duplicati {
    container: Container<GenericImage>,
    pub name: String,
    pub ip: Ipv4Addr,
    pub flavor: Flavor,
    /// Host folders behind `/source` and `/backups`.
    pub source_dir: PathBuf,
    pub backups_dir: PathBuf,
}

impl Duplicati {
    /// Starts the container on `network` (unpublished unless `publish_on`), then waits for
    /// `GET /health` over the bridge.
    pub fn start(
        name: &str,
        network: &str,
        workdir: &std::path::Path,
        opts: &DuplicatiOptions,
    ) -> Result<Duplicati> {
        let source_dir = workdir.join("source");
        let backups_dir = workdir.join("backups");
        let data_dir = workdir.join("data");
        for dir in [&backups_dir, &data_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // The stand-in runs as 65532 and writes backups, restores and its state here.
            crate::certs::chown(dir, crate::certs::CONTAINER_UID)?;
        }
        std::fs::create_dir_all(&source_dir)
            .with_context(|| format!("cannot create {}", source_dir.display()))?;

        let (repo, tag) = docker::split_image(opts.flavor.image());
        let mut request = GenericImage::new(repo, tag)
            .with_exposed_port(PORT.tcp())
            .with_container_name(name)
            .with_network(network)
            .with_label(LABEL, "1")
            .with_env_var("DUPLICATI__WEBSERVICE_PASSWORD", &opts.password)
            .with_env_var(
                "DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES",
                &opts.allowed_hostnames,
            )
            .with_env_var("DUPLICATI__WEBSERVICE_PORT", PORT.to_string())
            .with_env_var("DUPLICATI__WEBSERVICE_INTERFACE", "any")
            .with_mount(Mount::bind_mount(path_str(&source_dir)?, "/source"))
            .with_mount(Mount::bind_mount(path_str(&backups_dir)?, "/backups"))
            .with_mount(Mount::bind_mount(path_str(&data_dir)?, "/data"))
            .with_startup_timeout(READY_DEADLINE);
        request = match &opts.flavor {
            Flavor::StandIn { legacy } => {
                let mut cmd = vec![
                    "--data-dir=/data".to_owned(),
                    "--record-requests".to_owned(),
                ];
                if *legacy {
                    cmd.push("--profile=2.0".to_owned());
                }
                request.with_cmd(cmd)
            }
            // Settings are encrypted at rest with this key; without it 2.3 only warns.
            Flavor::Real { .. } => {
                request.with_env_var("SETTINGS_ENCRYPTION_KEY", crate::random::alphanumeric(32)?)
            }
        };
        let publish_on = opts.publish_on;
        // testcontainers publishes every exposed port on all host addresses unless told
        // otherwise; Duplicati stays unpublished (or bound to one address for the bypass).
        request = request.with_host_config_modifier(move |hc| {
            hc.publish_all_ports = Some(false);
            let mut bindings = HashMap::new();
            if let Some(ip) = publish_on {
                bindings.insert(
                    format!("{PORT}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some(ip.to_string()),
                        host_port: Some(PORT.to_string()),
                    }]),
                );
            }
            hc.port_bindings = Some(bindings);
        });
        let container = request
            .start()
            .with_context(|| format!("cannot start {name} from {}", opts.flavor.image()))?;
        // Compose makes the service name a network alias; testcontainers cannot set aliases
        // (HostConfig links are ignored on user-defined networks), so reattach with one.
        docker::docker(&["network", "disconnect", network, name])?;
        docker::docker(&["network", "connect", "--alias", "duplicati", network, name])?;
        let ip = docker::container_ip(name, network)?;
        let duplicati = Duplicati {
            container,
            name: name.to_owned(),
            ip,
            flavor: opts.flavor.clone(),
            source_dir,
            backups_dir,
        };
        duplicati.wait_healthy()?;
        Ok(duplicati)
    }

    /// The plain-HTTP address on the Docker bridge, reachable from the host.
    pub fn bridge_endpoint(&self) -> Endpoint {
        Endpoint::http(
            SocketAddr::from((self.ip, PORT)),
            &format!("{}:{PORT}", self.ip),
        )
    }

    /// 2.1+ answers `GET /health` with 200. 2.0 had no health endpoint: any HTTP answer (its
    /// 404) means the server is up.
    fn wait_healthy(&self) -> Result<()> {
        let legacy = self.flavor == Flavor::StandIn { legacy: true };
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < READY_DEADLINE {
            match client::send(&self.bridge_endpoint(), &Request::new("GET", "/health")) {
                Ok(r) if r.status == 200 || legacy => return Ok(()),
                Ok(r) => last = r.to_string(),
                Err(e) => last = e.to_string(),
            }
            if !self.container.is_running().unwrap_or(false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        crate::bail!(
            "{} did not answer GET /health with 200 within {:?}; last: {last}\n--- container log ---\n{}",
            self.name,
            READY_DEADLINE,
            self.logs()
        )
    }

    pub fn logs(&self) -> String {
        docker::logs(&self.name)
    }

    /// The stand-in's record of what reached it (E13); `None` for the real image.
    pub fn recorded_requests(&self) -> Result<Option<Vec<serde_json::Value>>> {
        if !self.flavor.is_standin() {
            return Ok(None);
        }
        let r = client::send(
            &self.bridge_endpoint(),
            &Request::new("GET", "/__standin/requests"),
        )?;
        crate::ensure!(r.status == 200, "GET /__standin/requests failed:\n{r}");
        let log = r.json()?;
        Ok(Some(
            log.get("requests")
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default(),
        ))
    }

    /// Forgets recorded requests, so a check sees only what follows.
    pub fn clear_recorded_requests(&self) -> Result<()> {
        if self.flavor.is_standin() {
            let r = client::send(
                &self.bridge_endpoint(),
                &Request::new("DELETE", "/__standin/requests"),
            )?;
            crate::ensure!(r.status < 300, "DELETE /__standin/requests failed:\n{r}");
        }
        Ok(())
    }
}

fn path_str(p: &std::path::Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| crate::Error::msg(format!("{} is not UTF-8", p.display())))
}
