//! duplicati-standin: a protocol-faithful stand-in for Duplicati's web server, for the gate's
//! end-to-end tests. Current (2.3) behaviour by default, the 2.0 HttpServer with `--legacy-2.0`.
//! Facts come from Duplicati's source as cited in each module; see
//! shared/research/duplicati-wire.md ("Emulator spec" E1-E13).

mod api;
mod app;
mod auth;
mod backups;
mod browse;
mod bulk;
mod config;
mod ctx;
mod events;
mod fileset;
mod hostcheck;
mod jwt;
mod legacy;
mod record;
mod reply;
mod restore;
mod routes;
mod spa;
mod status;
mod target;
mod tasks;
mod timeparse;
mod websocket;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use config::{Config, ConfigError, Interface, Profile};

fn main() -> ExitCode {
    let (config, warnings) = match Config::parse(std::env::args().skip(1), std::env::vars()) {
        Ok(c) => c,
        Err(ConfigError::Help) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("duplicati-standin: {e}");
            return ExitCode::from(2);
        }
    };
    for w in warnings {
        eprintln!("{w}");
    }
    async_std::task::block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    // Duplicati/Server/WebServerLoader.cs: Any listens on all interfaces, Loopback on localhost.
    let ip = match config.interface {
        Interface::Any => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Interface::Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Interface::Ip(ip) => ip,
    };
    let listener = match async_std::net::TcpListener::bind(SocketAddr::new(ip, config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "duplicati-standin: cannot listen on {ip}:{}: {e} (pick another --webservice-port, or 0 for a free one)",
                config.port
            );
            return ExitCode::from(2);
        }
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.port);
    // DuplicatiWebserver.cs: "*" for Any, "localhost" for Loopback, else the address.
    let shown = match config.interface {
        Interface::Any => "*".to_string(),
        Interface::Loopback => "localhost".to_string(),
        Interface::Ip(ip) => ip.to_string(),
    };
    let signin_link = config.password.is_none() && config.profile == Profile::Current;
    let first_host = config.allowed_hostnames.iter().find(|h| *h != "*").cloned();
    let app = match app::App::start(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("duplicati-standin: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("duplicati-standin: state in {}", app.data_dir.display());
    if signin_link {
        // Duplicati/Server/Program.cs + Strings.Program.ServerStartedSignin.
        let host = first_host.unwrap_or_else(|| "localhost".into());
        println!(
            "Use the following link to sign in: http://{host}:{port}/signin.html?token={}",
            app.auth.signin_token()
        );
    }
    // Strings.Program.ServerStarted; the tests wait for this line.
    println!("Server has started and is listening on {shown}, port {port}");
    let _ = std::io::stdout().flush();
    match app::serve(app, listener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duplicati-standin: accept failed: {e}");
            ExitCode::from(1)
        }
    }
}
