use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;

use duplicati_gate::access::throttle::Throttle;
use duplicati_gate::cli::{Cli, Command, GenCert, GenClientCert, Health};
use duplicati_gate::clientauth::DenyList;
use duplicati_gate::config::{CertChoice, Config};
use duplicati_gate::error::ConfigError;
use duplicati_gate::gate::{Access, Gate, Shutdown};
use duplicati_gate::server::{self, Listeners};
use duplicati_gate::upstream::Pool;
use duplicati_gate::{check, clientca, config, health, selfsigned, tls};

/// Exit codes: 2 for anything the user must fix in the configuration, 1 for runtime failures.
const EXIT_CONFIG: u8 = 2;
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Usage lines name the program as users type it, not the path it was started by.
    let command = args
        .first()
        .and_then(|arg0| std::path::Path::new(arg0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("duplicati-gate");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match Cli::from_args(&[command], &rest) {
        Ok(cli) => cli,
        Err(early) => {
            if early.status.is_ok() {
                println!("{}", early.output);
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", early.output.trim_end());
            eprintln!("Run `{command} --help` (or `{command} serve --help`) for the flags.");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Serve(serve) => run(Config::from_args(&serve.0).and_then(serve_forever)),
        Command::Check(args) => match Config::from_args(&args.0) {
            Ok(config) => {
                let report = check::run(&config);
                report.lines.iter().for_each(|line| println!("{line}"));
                if report.errors > 0 {
                    ExitCode::from(EXIT_CONFIG)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => run(Err(e)),
        },
        Command::GenCert(gen) => run(gen_cert(&gen)),
        Command::GenClientCert(gen) => run(gen_client_cert(&gen)),
        Command::Health(Health { addr }) => match async_std::task::block_on(health::probe(&addr)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
    }
}

fn run(result: Result<(), ConfigError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn serve_forever(config: Config) -> Result<(), ConfigError> {
    config
        .warnings
        .iter()
        .for_each(|w| eprintln!("warning: {w}"));
    server::raise_open_file_limit(config.limits.max_connections);
    let source = match &config.cert {
        CertChoice::Given(source) => {
            if let Some(warning) = check::key_permission_warning(source.key_path()) {
                eprintln!("warning: {warning}");
            }
            source.clone()
        }
        CertChoice::SelfSigned { dir, names } => {
            let (source, created) = selfsigned::ensure(dir, names)?;
            let verb = if created { "made" } else { "reusing" };
            let certificate = tls::load(&source)?;
            eprintln!(
                "{verb} a self-signed certificate for {} in {}\nits SHA-256 fingerprint (compare it with what your browser shows): {}",
                names.join(", "),
                dir.display(),
                tls::fingerprint(&certificate.chain[0])
            );
            source
        }
    };
    let access = &config.access;
    let client_auth = match &access.client_ca {
        Some((ca, revoked)) => Some((ca.clone(), Arc::new(DenyList::load(revoked.as_deref())?))),
        None => None,
    };
    let setup = tls::TlsSetup {
        cert: source,
        client_auth,
    };
    let server_config = setup.build()?;
    // async-std reads this once, when its executor starts (below). Measured on 2 cores: one
    // executor thread costs about a sixth less CPU per small request than two that hand work to
    // each other (27 -> 23 us, BENCHMARKS.md); a home server does not need the second core.
    if std::env::var_os("ASYNC_STD_THREAD_COUNT").is_none() {
        std::env::set_var("ASYNC_STD_THREAD_COUNT", config.limits.threads.to_string());
    }
    async_std::task::block_on(async {
        let listeners = Listeners::bind(&config).await?;
        let https = listeners
            .https
            .local_addr()
            .map_err(|source| ConfigError::Bind {
                flag: "--listen",
                address: config.listen,
                source,
            })?;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on https://{https}");
        if let Some(plain) = listeners
            .redirect
            .as_ref()
            .and_then(|l| l.local_addr().ok())
        {
            let _ = writeln!(stdout, "redirecting http://{plain} to https");
        }
        let _ = stdout.flush();
        drop(stdout);
        eprintln!("forwarding to Duplicati at {}", config.upstream.origin);
        let gate = Arc::new(Gate {
            pool: Pool::new(config.upstream.clone(), config.limits.connect_timeout),
            tls: tls::TlsHandle::new(server_config),
            setup,
            access: Access {
                allow: access.allow.clone(),
                throttle: (access.login_attempts > 0).then(|| Throttle::new(access.login_attempts)),
                preauth: access.preauth_token.clone(),
                hsts: access.hsts,
            },
            shutdown: Shutdown::default(),
            // `--listen HOST:0` binds a free port; redirects must name the real one.
            https_port: if config.https_port == 0 {
                https.port()
            } else {
                config.https_port
            },
            limits: config.limits.clone(),
        });
        // On an executor thread, not this one: the accept loop then shares the thread that
        // serves the connections.
        async_std::task::spawn(server::run(gate, listeners)).await;
        Ok(())
    })
}

fn gen_cert(gen: &GenCert) -> Result<(), ConfigError> {
    if gen.host.is_empty() {
        return Err(ConfigError::Flag {
            flag: "--host",
            problem: "no name given".into(),
            fix: "pass the name clients use, e.g. --host backup.lan (repeatable; IP addresses work too)".into(),
        });
    }
    let (cert_pem, key_pem) = selfsigned::generate(&gen.host)?;
    std::fs::create_dir_all(&gen.out).map_err(|source| ConfigError::File {
        what: "output directory",
        path: gen.out.clone(),
        source,
    })?;
    let (cert_path, key_path) = selfsigned::output_paths(&gen.out);
    selfsigned::write_private(&key_path, key_pem.as_bytes())?;
    std::fs::write(&cert_path, &cert_pem).map_err(|source| ConfigError::File {
        what: "certificate (writing)",
        path: cert_path.clone(),
        source,
    })?;
    let der =
        rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            ConfigError::Content {
                what: "certificate",
                path: cert_path.clone(),
                problem: e.to_string(),
                fix: "report this as a bug",
            }
        })?;
    println!(
        "wrote {} and {} (mode 0600)",
        cert_path.display(),
        key_path.display()
    );
    println!("SHA-256 fingerprint: {}", tls::fingerprint(&der));
    Ok(())
}

fn gen_client_cert(gen: &GenClientCert) -> Result<(), ConfigError> {
    let state = config::state_dir(gen.state_dir.as_ref())?;
    let device = clientca::issue(&state, &gen.name, &gen.out)?;
    if device.ca_created {
        println!("made a client CA in {}", state.display());
    }
    println!(
        "wrote {} (mode 0600), password: {}",
        device.bundle.display(),
        device.password
    );
    println!("serial {}  SHA-256 {}", device.serial, device.fingerprint);
    println!(
        "import it into the device's browser (Firefox: Settings > Privacy & Security > Certificates > View Certificates > Your Certificates > Import; Chrome/Edge: Settings > Privacy and security > Security > Manage certificates), then serve with --client-ca {}",
        device.ca_cert.display()
    );
    println!("to revoke this device later, add its serial to the file given to --revoked");
    Ok(())
}
