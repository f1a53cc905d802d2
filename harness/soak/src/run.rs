//! One soak run: start the stand-in and the gate, measure the gate at rest, load it for the
//! configured time, let it settle, measure again, stop both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_std::task::JoinHandle;

use crate::bulk::{self, Direction, Verified};
use crate::cli::Config;
use crate::conn::Failure;
use crate::load::{self, Load};
use crate::probe::{self, Fds, Sample};
use crate::procs::Proc;
use crate::sockets;
use crate::tls::{self, Client};

/// Both binaries print their ready line within a second; a slow disk or a cold cache gets more.
const READY: Duration = Duration::from_secs(30);
/// The login connection's close reaching the gate before the baseline is taken.
const BASELINE_SETTLE: Duration = Duration::from_secs(10);
/// After the last client hung up: the gate closes client connections as soon as it reads
/// close_notify (lingering up to 2 s after a refusal), and lets idle pooled connections to
/// Duplicati go after 60 s (IDLE_LIFETIME in the gate's src/upstream.rs; housekeeping checks every
/// 2 s). 80 s covers both, so every descriptor class must be back at its baseline.
const SETTLE: Duration = Duration::from_secs(80);
/// Tasks still busy when the load stops finish what they started: at worst a --bulk-mib transfer
/// and the two --big-mib ones on a loaded two-core machine.
const FINISH: Duration = Duration::from_secs(15 * 60);
/// The gate drains open exchanges for up to 10 s on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Default, Clone, Copy)]
pub struct Peaks {
    pub rss_kib: u64,
    pub fds: usize,
    pub client_fds: usize,
    pub upstream_fds: usize,
    pub samples: usize,
}

/// When a big transfer ran, in seconds from the start of the load.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: f64,
    pub to: f64,
}

pub struct Outcome {
    pub load: Arc<Load>,
    pub load_secs: f64,
    pub ramp_secs: Option<f64>,
    pub before: Sample,
    pub peaks: Peaks,
    pub after: Sample,
    pub settled: bool,
    pub big: Vec<(Direction, Result<Verified, Failure>, Window)>,
    pub stuck_tasks: usize,
    pub gate_alive: bool,
    pub gate_stop: String,
    pub standin_stop: String,
    pub dir: PathBuf,
    pub nofile: u64,
}

/// Our own descriptor limit up to the hard limit: every client connection is one descriptor here.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, exclusively borrowed rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn random_password() -> String {
    let mut b = [0u8; 18];
    // Only fails without OS randomness; the run would still be valid with zeros.
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::pattern::hex(&b)
}

/// The pattern digests every transfer is checked against, one thread per digest.
fn digests(cfg: &Config) -> HashMap<(u64, u64), String> {
    let mut wanted: Vec<(u64, u64)> = bulk::LOOP_SEEDS
        .iter()
        .map(|&s| (s, cfg.bulk_size))
        .collect();
    wanted.push((bulk::BIG_DOWNLOAD_SEED, cfg.big_size));
    wanted.push((bulk::BIG_UPLOAD_SEED, cfg.big_size));
    std::thread::scope(|s| {
        let jobs: Vec<_> = wanted
            .iter()
            .map(|&(seed, size)| {
                (
                    seed,
                    size,
                    s.spawn(move || crate::pattern::sha256(seed, size)),
                )
            })
            .collect();
        jobs.into_iter()
            .filter_map(|(seed, size, h)| h.join().ok().map(|d| ((seed, size), d)))
            .collect()
    })
}

pub fn run(cfg: Config) -> Result<Outcome, String> {
    let nofile = raise_nofile();
    let dir = std::env::temp_dir().join(format!("duplicati-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let roots = tls::make_cert(&dir)?;
    let password = random_password();

    let mut cmd = Command::new(&cfg.standin);
    cmd.arg("--webservice-port=0")
        .arg(format!("--webservice-password={password}"))
        .arg("--bulk-endpoints")
        .arg(format!("--data-dir={}", dir.join("standin").display()));
    // "Server has started and is listening on localhost, port 40123"
    let (mut standin, up_port) = Proc::start("standin", cmd, &dir, Instant::now() + READY, |l| {
        l.strip_prefix("Server has started and is listening on ")?
            .rsplit_once(", port ")?
            .1
            .trim()
            .parse::<u16>()
            .ok()
    })?;

    let mut cmd = Command::new(&cfg.gate);
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(["--upstream", &format!("http://127.0.0.1:{up_port}")])
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .arg("--state-dir")
        .arg(dir.join("gate-state"));
    let (mut gate, addr) = Proc::start("gate", cmd, &dir, Instant::now() + READY, |l| {
        l.strip_prefix("listening on https://")?
            .trim()
            .parse::<SocketAddr>()
            .ok()
    })?;

    eprintln!(
        "soak: stand-in pid {} on 127.0.0.1:{up_port}, gate pid {} on {addr}; logs in {}",
        standin.pid,
        gate.pid,
        dir.display()
    );
    eprintln!("soak: computing the expected SHA-256 of the transfers");
    let digests = digests(&cfg);
    let client = Client::new(roots, addr)?;
    let driven = async_std::task::block_on(drive(
        cfg,
        client,
        password,
        digests,
        (gate.pid, addr.port(), up_port),
    ));
    let gate_alive = gate.alive();
    let gate_stop = gate.stop(STOP_GRACE);
    let standin_stop = standin.stop(STOP_GRACE);
    let mut outcome = driven?;
    outcome.gate_alive = gate_alive;
    outcome.gate_stop = gate_stop;
    outcome.standin_stop = standin_stop;
    outcome.dir = dir;
    outcome.nofile = nofile;
    Ok(outcome)
}

async fn sample(target: (u32, u16, u16)) -> Result<Sample, String> {
    let (pid, gate_port, up_port) = target;
    async_std::task::spawn_blocking(move || probe::sample(pid, gate_port, up_port))
        .await
        .map_err(|e| format!("cannot read /proc/{pid}: {e} (did the gate exit?)"))
}

/// Samples until `done` holds or `deadline` passes; the last sample and whether `done` held.
async fn sample_until(
    target: (u32, u16, u16),
    deadline: Instant,
    done: impl Fn(&Fds) -> bool,
) -> Result<(Sample, bool), String> {
    loop {
        let s = sample(target).await?;
        if done(&s.fds) {
            return Ok((s, true));
        }
        if Instant::now() >= deadline {
            return Ok((s, false));
        }
        async_std::task::sleep(POLL).await;
    }
}

/// Runs `f` as a task counted in `live` until it returns.
fn spawn_counted<F>(live: &Arc<AtomicUsize>, f: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    live.fetch_add(1, Ordering::SeqCst);
    let live = live.clone();
    async_std::task::spawn(async move {
        f.await;
        live.fetch_sub(1, Ordering::SeqCst);
    })
}

async fn drive(
    cfg: Config,
    client: Client,
    password: String,
    digests: HashMap<(u64, u64), String>,
    target: (u32, u16, u16),
) -> Result<Outcome, String> {
    let token = load::login(&client, &password)
        .await
        .map_err(|f| format!("login through the gate failed: {f}"))?;
    let (before, _) =
        sample_until(target, Instant::now() + BASELINE_SETTLE, |f| f.client == 0).await?;
    eprintln!("soak: baseline {before:?}; loading for {:?}", cfg.duration);

    let start = Instant::now();
    let load = Arc::new(Load::new(
        cfg.clone(),
        client,
        password,
        token,
        start + cfg.duration,
        digests,
    ));
    let live = Arc::new(AtomicUsize::new(0));
    let mut handles = vec![spawn_counted(&live, load::keep_token(load.clone()))];
    for id in 0..cfg.connections {
        handles.push(spawn_counted(&live, load::small_worker(load.clone(), id)));
    }
    for id in 0..cfg.websockets {
        handles.push(spawn_counted(&live, sockets::holder(load.clone(), id)));
    }
    for (dir, n) in [
        (Direction::Download, cfg.downloads),
        (Direction::Upload, cfg.uploads),
    ] {
        for w in 0..n {
            handles.push(spawn_counted(&live, bulk::bulk_loop(load.clone(), dir, w)));
        }
    }

    let sampling = Arc::new(AtomicBool::new(true));
    let peaks = Arc::new(Mutex::new(Peaks::default()));
    let sampler = {
        let (sampling, peaks) = (sampling.clone(), peaks.clone());
        async_std::task::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(s) = sample(target).await {
                    let mut p = peaks.lock().unwrap_or_else(|e| e.into_inner());
                    p.rss_kib = p.rss_kib.max(s.hwm_kib).max(s.rss_kib);
                    p.fds = p.fds.max(s.fds.total);
                    p.client_fds = p.client_fds.max(s.fds.client);
                    p.upstream_fds = p.upstream_fds.max(s.fds.upstream);
                    p.samples += 1;
                }
                async_std::task::sleep(SAMPLE_EVERY).await;
            }
        })
    };

    // The big transfers start once every connection is up (or a third of the run has passed), so
    // they run under the full background load.
    let expected = cfg.connections + cfg.websockets;
    let ramp_deadline = start + cfg.duration / 3;
    while load.opened.load(Ordering::Relaxed) < expected && Instant::now() < ramp_deadline {
        async_std::task::sleep(POLL).await;
    }
    let ramp_secs =
        (load.opened.load(Ordering::Relaxed) >= expected).then(|| start.elapsed().as_secs_f64());
    eprintln!(
        "soak: {} of {expected} connections up after {:.1} s; starting the {} MiB transfers",
        load.opened.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        cfg.big_size >> 20
    );
    let bigs: Vec<_> = [Direction::Download, Direction::Upload]
        .into_iter()
        .map(|dir| {
            let load = load.clone();
            async_std::task::spawn(async move {
                let from = start.elapsed().as_secs_f64();
                let r = bulk::big(load, dir).await;
                (
                    dir,
                    r,
                    Window {
                        from,
                        to: start.elapsed().as_secs_f64(),
                    },
                )
            })
        })
        .collect();

    while !load.load_over() {
        async_std::task::sleep(POLL).await;
    }
    let load_secs = start.elapsed().as_secs_f64();
    eprintln!("soak: load over; waiting for transfers in flight and clean closes");
    let finish_deadline = Instant::now() + FINISH;
    let mut big = Vec::new();
    for h in bigs {
        let left = finish_deadline.saturating_duration_since(Instant::now());
        match async_std::future::timeout(left, h).await {
            Ok(r) => big.push(r),
            Err(_) => load.stats.error(
                "finish",
                &Failure::new(
                    "timeout",
                    format!("a big transfer still running after {FINISH:?}"),
                ),
            ),
        }
    }
    while live.load(Ordering::SeqCst) > 0 && Instant::now() < finish_deadline {
        async_std::task::sleep(POLL).await;
    }
    let stuck_tasks = live.load(Ordering::SeqCst);
    drop(handles);
    sampling.store(false, Ordering::SeqCst);
    sampler.await;

    let (after, settled) = sample_until(target, Instant::now() + SETTLE, |f| {
        f.client <= before.fds.client
            && f.other <= before.fds.other
            && f.upstream <= before.fds.upstream
    })
    .await?;
    let peaks = *peaks.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Outcome {
        load,
        load_secs,
        ramp_secs,
        before,
        peaks,
        after,
        settled,
        big,
        stuck_tasks,
        gate_alive: false,
        gate_stop: String::new(),
        standin_stop: String::new(),
        dir: PathBuf::new(),
        nofile: 0,
    })
}
