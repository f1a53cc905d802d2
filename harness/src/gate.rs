//! The gate's container, deployed as `docker-compose.yml` deploys it: on the same user-defined
//! network as Duplicati, upstream `http://duplicati:8200`, ports 8443/8080 published, but here
//! only on the host end of the client's veth.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use testcontainers::bollard::models::PortBinding;
use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::docker::{self, GATE_IMAGE, LABEL};
use crate::error::{Context, Result};

pub const HTTPS_PORT: u16 = 8443;
pub const HTTP_PORT: u16 = 8080;
/// The gate prints its first line once it accepts connections; a static binary in a scratch
/// container gets there in milliseconds, so 30 s means it is broken.
const READY_DEADLINE: Duration = Duration::from_secs(30);

pub struct Gate {
    container: Container<GenericImage>,
    pub name: String,
    pub publish_ip: Ipv4Addr,
}

impl Gate {
    /// Duplicati must already be on `network` under the alias `duplicati`.
    pub fn start(
        name: &str,
        network: &str,
        certs_dir: &Path,
        publish_ip: Ipv4Addr,
        extra_args: &[String],
    ) -> Result<Gate> {
        let certs = certs_dir
            .to_str()
            .ok_or_else(|| crate::Error::msg(format!("{} is not UTF-8", certs_dir.display())))?;
        let (repo, tag) = docker::split_image(GATE_IMAGE);
        let container = GenericImage::new(repo, tag)
            .with_exposed_port(HTTPS_PORT.tcp())
            .with_exposed_port(HTTP_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("listening on https://"))
            .with_container_name(name)
            .with_network(network)
            .with_label(LABEL, "1")
            .with_mount(Mount::bind_mount(certs, "/certs"))
            .with_cmd(
                [
                    "serve",
                    "--listen",
                    "0.0.0.0:8443",
                    "--redirect-http",
                    "0.0.0.0:8080",
                    // Published as the same port here; docker-compose.yml says 443.
                    "--https-port",
                    "8443",
                    "--upstream",
                    "http://duplicati:8200",
                    "--cert",
                    "/certs/cert.pem",
                    "--key",
                    "/certs/key.pem",
                    "--state-dir",
                    "/state",
                ]
                .into_iter()
                .map(str::to_owned)
                .chain(extra_args.iter().cloned()),
            )
            .with_startup_timeout(READY_DEADLINE)
            .with_host_config_modifier(move |hc| {
                hc.publish_all_ports = Some(false);
                let bind = |port: u16| {
                    Some(vec![PortBinding {
                        host_ip: Some(publish_ip.to_string()),
                        host_port: Some(port.to_string()),
                    }])
                };
                hc.port_bindings = Some(HashMap::from([
                    (format!("{HTTPS_PORT}/tcp"), bind(HTTPS_PORT)),
                    (format!("{HTTP_PORT}/tcp"), bind(HTTP_PORT)),
                ]));
            })
            .start()
            .map_err(|e| {
                crate::Error::msg(format!(
                    "cannot start the gate {name} from {GATE_IMAGE}: {e}\n--- gate log ---\n{}",
                    docker::logs(name)
                ))
            })?;
        Ok(Gate {
            container,
            name: name.to_owned(),
            publish_ip,
        })
    }

    pub fn logs(&self) -> String {
        docker::logs(&self.name)
    }

    /// Runs `duplicati-gate ARGS` inside the running container (no shell there), returning the
    /// exit code and output.
    pub fn exec(&self, args: &[&str]) -> Result<(i64, String)> {
        let mut cmd = vec!["exec", self.name.as_str(), "/usr/local/bin/duplicati-gate"];
        cmd.extend_from_slice(args);
        let out = std::process::Command::new("docker")
            .args(&cmd)
            .output()
            .context("cannot run docker exec")?;
        Ok((
            i64::from(out.status.code().unwrap_or(-1)),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    /// `docker inspect` of the container, for image-level assertions (user, health).
    pub fn inspect(&self, format: &str) -> Result<String> {
        Ok(
            docker::docker(&["inspect", "--format", format, self.container.id()])?
                .trim()
                .to_owned(),
        )
    }
}
