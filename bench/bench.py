#!/usr/bin/env python3
"""The gate and nginx side by side: same upstream, same certificate, same load generator.

`just bench` runs this after building the release binary. It starts one upstream (Debian's nginx
serving a 2 KB JSON file, a 256 MiB file and an upload sink on 127.0.0.1), then, in turns, the
gate and nginx as TLS reverse proxies in front of it, and drives each with wrk:

  keep-alive   wrk -t2 -c64, GET /small.json (2 KB) on 64 keep-alive connections
  handshake    the same with `Connection: close`: every request is a new TLS connection, with
               a full handshake (no-resume.c keeps wrk from offering a session) and, reported
               beside it, as wrk does by itself: resumed with the server's TLS 1.3 ticket
  download     wrk -t1 -c1, GET /big.bin (256 MiB) over and over on one connection
  upload       wrk -t1 -c1, POST /upload with a 1 MiB body over and over on one connection

CPU is utime+stime of the proxy's whole process tree (the gate: one process; nginx: master and
workers) read from /proc before and after each load, divided by the work done. On a 2-core box
where wrk and the upstream compete for the same cores, requests/s moves with the noise; CPU per
unit of work holds still. RSS is VmRSS summed over the tree, sampled every 20 ms for the peak.

Every load runs for --duration seconds in each of --rounds rounds (the proxies alternate which
goes first); the table shows the median. Figures are printed, never asserted: this is not part
of `just ci`. Everything started here is stopped here, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NGINX = "/usr/sbin/nginx"
WRK = "wrk"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SMALL_BYTES = 2048
BIG_BYTES = 256 * 1024 * 1024
# Kept under the upstream's client_body_buffer_size (2m), so the sink never touches the disk.
POST_BYTES = 1024 * 1024
KEEPALIVE_CONNECTIONS = 64
# How often RSS is sampled for the peak; short enough to catch a 256 MiB download's buffers.
RSS_SAMPLE_S = 0.02
# Startup is timed this many times; the median is reported.
STARTUP_RUNS = 9
# A proxy that is not accepting connections this long after spawn is broken, not slow.
READY_DEADLINE_S = 10.0
# wrk's default 2 s timeout would count a slow 256 MiB response as an error.
WRK_TIMEOUT = "60s"


# ---------------------------------------------------------------------------------------------
# /proc: process trees, CPU, RSS


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat (field 4; the command name may hold spaces, so split
    after its closing parenthesis)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root: int) -> list[int]:
    kids = children_map()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(kids.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    """utime+stime (fields 14, 15) of every live process in the tree, all threads included."""
    total = 0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(root: int) -> int:
    total = 0
    for pid in tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if match:
            total += int(match.group(1))
    return total


class PeakRss:
    """Samples the tree's RSS in a thread while a load runs; `peak` is the largest sample."""

    def __init__(self, root: int):
        self.root, self.peak = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.root))
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------------
# Processes we start, and stopping them


STARTED: list[subprocess.Popen] = []


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(args, **kwargs)
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stops one process we started, by its PID: `sig`, then SIGKILL after 15 s (the gate's
    graceful stop waits up to 10 s for open exchanges)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in STARTED:
        STARTED.remove(proc)


def stop_everything() -> None:
    for proc in reversed(list(STARTED)):
        stop(proc)


def free_port() -> int:
    # nginx cannot report the port it bound, so the bench picks one the kernel just handed out.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port: int, proc: subprocess.Popen, what: str) -> float:
    """Polls until `port` accepts a TCP connection; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < READY_DEADLINE_S:
        if proc.poll() is not None:
            sys.exit(f"error: {what} exited with {proc.returncode} before accepting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return time.monotonic() - start
        except OSError:
            time.sleep(0.001)
    sys.exit(f"error: {what} not accepting on 127.0.0.1:{port} after {READY_DEADLINE_S} s")


# ---------------------------------------------------------------------------------------------
# The upstream and the two proxies


def render(template: str, out: Path, **words: str) -> Path:
    text = (BENCH_DIR / template).read_text()
    # Workers drop to nobody when the master runs as root, as Debian's packaged nginx does.
    words.setdefault("USER", "user nobody nogroup;" if os.geteuid() == 0 else "")
    for key, value in words.items():
        text = text.replace(f"@{key}@", value)
    out.write_text(text)
    return out


def start_nginx(conf: Path, work: Path, name: str) -> subprocess.Popen:
    errlog = work / f"{name}.startup.log"
    return spawn(
        [NGINX, "-p", str(work), "-c", str(conf), "-e", str(errlog)],
        stdout=subprocess.DEVNULL,
        stderr=open(errlog, "ab"),
    )


@dataclass
class Proxy:
    name: str
    proc: subprocess.Popen
    port: int
    access_log: Path


def start_gate(gate: Path, work: Path, upstream_port: int, cert: Path, key: Path,
               tag: str) -> tuple[Proxy, float]:
    """Starts the gate on a free port; returns it and the seconds until `listening on`."""
    log = work / f"gate-{tag}.log"
    start = time.monotonic()
    proc = spawn(
        [str(gate), "serve", "--listen", "127.0.0.1:0",
         "--upstream", f"http://127.0.0.1:{upstream_port}", "--cert", str(cert), "--key", str(key)],
        stdout=subprocess.PIPE,
        # The access log: one line per request, to a file, as nginx's.
        stderr=open(log, "wb"),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    elapsed = time.monotonic() - start
    match = re.match(r"listening on https://127\.0\.0\.1:(\d+)", line)
    if not match:
        stop(proc)
        sys.exit(f"error: the gate printed {line!r} instead of `listening on`; see {log}")
    return Proxy("gate", proc, int(match.group(1)), log), elapsed


def start_nginx_proxy(work: Path, upstream_port: int, cert: Path, key: Path) -> Proxy:
    port = free_port()
    conf = render("proxy.nginx.conf", work / "proxy.nginx.conf", DIR=str(work),
                  UPSTREAM_PORT=str(upstream_port), PROXY_PORT=str(port),
                  CERT=str(cert), KEY=str(key))
    proc = start_nginx(conf, work, "proxy")
    wait_accepting(port, proc, "the nginx proxy")
    return Proxy("nginx", proc, port, work / "proxy.access.log")


# ---------------------------------------------------------------------------------------------
# Loads


@dataclass
class Run:
    requests: int
    bytes_read: int
    duration_s: float
    errors: dict
    p50_ms: float
    p99_ms: float
    cpu_s: float
    rss_peak_kib: int
    post_bytes: int = 0

    @property
    def bytes_up(self) -> int:
        return self.requests * self.post_bytes


def wrk(proxy: Proxy, path: str, threads: int, conns: int, duration: int,
        headers: list[str] = (), post_bytes: int = 0, preload: Path | None = None) -> Run:
    args = [WRK, f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", WRK_TIMEOUT,
            "-s", str(BENCH_DIR / "wrk.lua")]
    for h in headers:
        args += ["-H", h]
    args.append(f"https://localhost:{proxy.port}{path}")
    env = dict(os.environ, BENCH_POST_BYTES=str(post_bytes))
    if preload:
        env["LD_PRELOAD"] = str(preload)
    cpu_before = cpu_seconds(proxy.proc.pid)
    with PeakRss(proxy.proc.pid) as rss:
        done = subprocess.run(args, env=env, capture_output=True, text=True)
    cpu = cpu_seconds(proxy.proc.pid) - cpu_before
    found = re.search(r"^BENCH-JSON (.*)$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        sys.exit(f"error: wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    r = json.loads(found.group(1))
    return Run(r["requests"], r["bytes_read"], r["duration_us"] / 1e6, r["errors"],
               r["p50_us"] / 1000, r["p99_us"] / 1000, cpu, rss.peak, r["post_bytes"])


def upstream_connections(log: Path, offset: int) -> tuple[int, int]:
    """(connections opened, connections used) in the upstream's log after `offset`: a line with
    $connection_requests == 1 is the first request on a new connection."""
    with open(log, "rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    opened = sum(1 for line in lines if line.split()[1:2] == ["1"])
    used = len({line.split()[0] for line in lines if line.strip()})
    return opened, used


def negotiated(port: int) -> str:
    """What OpenSSL 3 (the library wrk links) negotiates with default settings."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-brief"],
        input="", capture_output=True, text=True, timeout=10)
    keep = ("Protocol version", "Ciphersuite", "Peer signature type", "Server Temp Key",
            "Negotiated TLS1.3 group")
    found = [line.split(":", 1) for line in out.stderr.splitlines() if line.startswith(keep)]
    return ", ".join(value.strip() for _, value in found) or out.stderr.strip()


def resumption_counts(access_log: Path, offset: int) -> tuple[int, int]:
    """(full handshakes, resumed) from nginx's $ssl_session_reused ('.' or 'r')."""
    with open(access_log, "rb") as f:
        f.seek(offset)
        last = [line.split()[-1] for line in f.read().decode().splitlines() if line.strip()]
    return last.count("."), last.count("r")


def measure(proxy: Proxy, upstream_log: Path, duration: int, first_round: bool,
            no_resume: Path) -> dict:
    """All loads against one running proxy. Returns the figures for this round."""
    pid = proxy.proc.pid
    # Let startup allocations settle before calling the process idle.
    time.sleep(1.0)
    result: dict = {"rss_idle_kib": rss_kib(pid)}
    if first_round:
        result["negotiated"] = negotiated(proxy.port)

    offset = upstream_log.stat().st_size
    ka = wrk(proxy, "/small.json", 2, KEEPALIVE_CONNECTIONS, duration)
    result["upstream_opened"], result["upstream_used"] = upstream_connections(upstream_log, offset)
    result["keepalive"] = ka

    for load, preload in (("handshake", no_resume), ("resumed", None)):
        log_offset = proxy.access_log.stat().st_size
        result[load] = wrk(proxy, "/small.json", 2, KEEPALIVE_CONNECTIONS, duration,
                           headers=["Connection: close"], preload=preload)
        if proxy.name == "nginx":
            result[f"{load}_tls"] = resumption_counts(proxy.access_log, log_offset)

    result["download"] = wrk(proxy, "/big.bin", 1, 1, duration)
    result["upload"] = wrk(proxy, "/upload", 1, 1, duration, post_bytes=POST_BYTES)
    result["rss_after_kib"] = rss_kib(pid)
    return result


def describe(name: str, r: dict) -> str:
    ka, hs, dl, ul = r["keepalive"], r["handshake"], r["download"], r["upload"]
    errs = {k: sum(r[k].errors.values()) for k in ("keepalive", "handshake", "resumed",
                                                    "download", "upload")}
    return (f"  {name:5}  keep-alive {ka.requests / ka.duration_s:8.0f} req/s "
            f"{ka.cpu_s / ka.requests * 1e6:6.1f} µs/req | "
            f"handshake {hs.requests / hs.duration_s:5.0f}/s {hs.cpu_s / hs.requests * 1e6:5.0f} µs "
            f"(resumed {r['resumed'].cpu_s / r['resumed'].requests * 1e6:4.0f} µs) | "
            f"down {dl.bytes_read / dl.duration_s / 1e6:5.0f} MB/s {dl.cpu_s / dl.bytes_read * 1e9:4.2f} s/GB | "
            f"up {ul.bytes_up / ul.duration_s / 1e6:5.0f} MB/s "
            f"{ul.cpu_s / max(ul.bytes_up, 1) * 1e9:4.2f} s/GB | "
            f"RSS {r['rss_idle_kib'] / 1024:.1f}/{ka.rss_peak_kib / 1024:.1f}/"
            f"{dl.rss_peak_kib / 1024:.1f} MiB | upstream conns {r['upstream_opened']}"
            + (f" | errors {errs}" if any(errs.values()) else ""))


# ---------------------------------------------------------------------------------------------
# The table


@dataclass
class Row:
    label: str
    # Extracts one number from a round's figures.
    value: callable
    fmt: str
    # "ratio<=", "ratio>=", "abs<=" or "" (reported, no target).
    kind: str = ""
    bound: float = 0.0
    gate_only: bool = False


ROWS = [
    Row("keep-alive 2 KB: requests/s", lambda r: r["keepalive"].requests / r["keepalive"].duration_s,
        "{:.0f}", "ratio>=", 1.2),
    Row("keep-alive 2 KB: p50 / p99 latency, ms",
        lambda r: (r["keepalive"].p50_ms, r["keepalive"].p99_ms), "{:.2f} / {:.2f}"),
    Row("keep-alive 2 KB: CPU µs per request",
        lambda r: r["keepalive"].cpu_s / r["keepalive"].requests * 1e6, "{:.1f}", "ratio<=", 0.8),
    Row("full handshakes/s (Connection: close)",
        lambda r: r["handshake"].requests / r["handshake"].duration_s, "{:.0f}"),
    Row("handshake: p50 / p99 latency, ms",
        lambda r: (r["handshake"].p50_ms, r["handshake"].p99_ms), "{:.2f} / {:.2f}"),
    Row("CPU µs per full handshake (+ 1 request)",
        lambda r: r["handshake"].cpu_s / r["handshake"].requests * 1e6, "{:.0f}", "ratio<=", 1.0),
    Row("resumed handshakes/s (wrk as is: TLS 1.3 ticket)",
        lambda r: r["resumed"].requests / r["resumed"].duration_s, "{:.0f}"),
    Row("CPU µs per resumed handshake (+ 1 request)",
        lambda r: r["resumed"].cpu_s / r["resumed"].requests * 1e6, "{:.0f}"),
    Row("download 256 MiB: MB/s",
        lambda r: r["download"].bytes_read / r["download"].duration_s / 1e6, "{:.0f}",
        "ratio>=", 1.2),
    Row("download: CPU s per GB",
        lambda r: r["download"].cpu_s / r["download"].bytes_read * 1e9, "{:.2f}", "ratio<=", 0.8),
    Row("upload 1 MiB POSTs: MB/s",
        lambda r: r["upload"].bytes_up / r["upload"].duration_s / 1e6, "{:.0f}", "ratio>=", 1.2),
    Row("upload: CPU s per GB",
        lambda r: r["upload"].cpu_s / max(r["upload"].bytes_up, 1) * 1e9, "{:.2f}",
        "ratio<=", 0.8),
    Row("RSS idle, MiB", lambda r: r["rss_idle_kib"] / 1024, "{:.1f}", "abs<=", 8),
    Row("RSS peak, 64 keep-alive conns, MiB", lambda r: r["keepalive"].rss_peak_kib / 1024,
        "{:.1f}", "abs<=", 16),
    Row("RSS peak during 256 MiB download, MiB", lambda r: r["download"].rss_peak_kib / 1024,
        "{:.1f}", "abs<=", 16),
    Row(f"upstream conns opened, {KEEPALIVE_CONNECTIONS}-conn keep-alive run",
        lambda r: r["upstream_opened"], "{:.0f}", "abs<=", KEEPALIVE_CONNECTIONS),
]


def median(values):
    if isinstance(values[0], tuple):
        return tuple(statistics.median(v[i] for v in values) for i in range(len(values[0])))
    return statistics.median(values)


def verdict(row: Row, gate: float, nginx: float | None) -> str:
    if row.kind == "ratio<=":
        return f"≤ {row.bound}× nginx: " + ("met" if gate <= row.bound * nginx else "MISSED")
    if row.kind == "ratio>=":
        return f"≥ {row.bound}× nginx: " + ("met" if gate >= row.bound * nginx else "MISSED")
    if row.kind == "abs<=":
        return f"≤ {row.bound:g}: " + ("met" if gate <= row.bound else "MISSED")
    return ""


def table(rounds: dict[str, list[dict]], startup_gate: float, startup_nginx: float) -> str:
    lines = ["| per unit of work | gate | nginx | gate/nginx | target |",
             "|---|---:|---:|---:|---|"]
    for row in ROWS:
        g = median([row.value(r) for r in rounds["gate"]])
        n = median([row.value(r) for r in rounds["nginx"]])
        if isinstance(g, tuple):
            ratio = " / ".join(f"{a / b:.2f}" for a, b in zip(g, n))
            gs, ns = row.fmt.format(*g), row.fmt.format(*n)
        else:
            ratio = f"{g / n:.2f}" if n else "-"
            gs, ns = row.fmt.format(g), row.fmt.format(n)
        lines.append(f"| {row.label} | {gs} | {ns} | {ratio} | {verdict(row, g, n)} |")
    lines.append(f"| startup to `listening on` / accepting, ms (median of {STARTUP_RUNS}) | "
                 f"{startup_gate * 1000:.1f} | {startup_nginx * 1000:.1f} | "
                 f"{startup_gate / startup_nginx:.2f} | ≤ 50 ms: "
                 f"{'met' if startup_gate <= 0.050 else 'MISSED'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Setup


def prepare(work: Path, gate: Path) -> tuple[Path, Path, Path]:
    """The served files and the certificate both proxies use; made once, kept in `work`."""
    www = work / "www"
    www.mkdir(parents=True, exist_ok=True)
    small = www / "small.json"
    if not small.exists() or small.stat().st_size != SMALL_BYTES:
        # A Duplicati-like /api/v1 answer, padded to exactly 2 KB.
        entry = '{"ID":"%d","Name":"backup %d","Status":"Success"},'
        body = '{"Backups":[' + "".join(entry % (i, i) for i in range(30))
        body = body[: SMALL_BYTES - 3].rstrip(",") + "]}"
        small.write_text(body.ljust(SMALL_BYTES - 1) + "\n")
    big = www / "big.bin"
    if not big.exists() or big.stat().st_size != BIG_BYTES:
        # Random bytes, so nothing on the way can shortcut zeros.
        block = os.urandom(1024 * 1024)
        with open(big, "wb") as f:
            for _ in range(BIG_BYTES // len(block)):
                f.write(block)
    # nginx's workers run as nobody when started by root.
    for path in (work, www, small, big):
        path.chmod(path.stat().st_mode | 0o005)

    certs = work / "cert"
    cert, key = certs / "cert.pem", certs / "key.pem"
    if not (cert.exists() and key.exists()):
        made = subprocess.run([str(gate), "gen-cert", "--host", "localhost", "--out", str(certs)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            sys.exit(f"error: gen-cert failed: {made.stderr}")
        written = [Path(p) for p in re.findall(r"(/\S+\.pem)", made.stdout)]
        if len(written) != 2:
            sys.exit(f"error: cannot tell which files gen-cert wrote: {made.stdout!r}")
        cert, key = sorted(written, key=lambda p: "key" in p.name)
    return cert, key


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "unknown CPU")
    nginx_v = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    wrk_v = subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    return (f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}; "
            f"{nginx_v}; {wrk_v.split(' Copyright')[0]}")


def source_state() -> str:
    """The commit the binary was (presumably) built from, and whether src/ had changes on top."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True,
                              text=True).stdout.strip()
    changed = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}" + (
        f" + uncommitted changes in {len(changed.splitlines())} files" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gate", type=Path, default=REPO / "target/release/duplicati-gate")
    parser.add_argument("--work", type=Path, default=REPO / "target/bench",
                        help="configs, logs, served files, certificate (kept between runs)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in (NGINX, WRK, "openssl", "cc"):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} not found: apt-get install nginx libnginx-mod-http-echo "
                     "wrk openssl gcc")
    if not args.gate.exists():
        sys.exit(f"error: no gate binary at {args.gate}: cargo build --release -p duplicati-gate")

    began = time.monotonic()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # A copy, so that a rebuild by someone else mid-run cannot mix two binaries in one table.
    gate = work / "duplicati-gate"
    shutil.copy2(args.gate, gate)
    cert, key = prepare(work, gate)
    no_resume = work / "no-resume.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(no_resume),
                    str(BENCH_DIR / "no-resume.c"), "-ldl"], check=True)
    print(f"machine: {machine()}")
    # Read once, before the runs: the lead may commit while the bench runs.
    state = source_state()
    print(f"gate: {args.gate}; the repository is at {state}")
    # Other builds on a shared box inflate CPU per request (cache and scheduler contention).
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}")
    print(f"work dir: {work}; certificate: {cert}")

    upstream_port = free_port()
    upstream_log = work / "upstream.access.log"
    conf = render("upstream.nginx.conf", work / "upstream.nginx.conf", DIR=str(work),
                  UPSTREAM_PORT=str(upstream_port), WWW=str(work / "www"))
    upstream = start_nginx(conf, work, "upstream")
    wait_accepting(upstream_port, upstream, "the upstream nginx")

    # Startup: the gate to its `listening on` line (certificate present); nginx, for comparison,
    # to its first accepted connection.
    gate_starts = []
    for i in range(STARTUP_RUNS):
        proxy, elapsed = start_gate(gate, work, upstream_port, cert, key, "startup")
        gate_starts.append(elapsed)
        stop(proxy.proc)
    nginx_starts = []
    for i in range(STARTUP_RUNS):
        start = time.monotonic()
        proxy = start_nginx_proxy(work, upstream_port, cert, key)
        nginx_starts.append(time.monotonic() - start)
        stop(proxy.proc)
    print(f"startup: gate {[round(s * 1000, 1) for s in gate_starts]} ms, "
          f"nginx {[round(s * 1000, 1) for s in nginx_starts]} ms")

    rounds: dict[str, list[dict]] = {"gate": [], "nginx": []}
    negotiated_with: dict[str, str] = {}
    for n in range(args.rounds):
        order = ["gate", "nginx"] if n % 2 == 0 else ["nginx", "gate"]
        for name in order:
            if name == "gate":
                proxy, _ = start_gate(gate, work, upstream_port, cert, key, f"round{n + 1}")
            else:
                proxy = start_nginx_proxy(work, upstream_port, cert, key)
            try:
                result = measure(proxy, upstream_log, args.duration, n == 0, no_resume)
            finally:
                stop(proxy.proc)
            if "negotiated" in result:
                negotiated_with[name] = result["negotiated"]
            rounds[name].append(result)
            print(f"round {n + 1}:" + describe(name, result), flush=True)
    stop(upstream)

    print()
    for name, what in negotiated_with.items():
        print(f"negotiated with {name} (OpenSSL 3, as wrk): {what}")
    # The positive control for no-resume.c: wrk as is resumes, with the shim it does not. The
    # gate keeps no log of it, but the client decides, and it is the same client.
    for load in ("handshake", "resumed"):
        full, resumed = zip(*(r[f"{load}_tls"] for r in rounds["nginx"]))
        print(f"nginx saw in the {load} load: {sum(full)} full handshakes, {sum(resumed)} resumed")
    print(f"upstream connections used in the keep-alive run: gate "
          f"{[r['upstream_used'] for r in rounds['gate']]}, "
          f"nginx {[r['upstream_used'] for r in rounds['nginx']]}")
    print(f"\nmedian of {args.rounds} rounds, {args.duration} s per load, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {machine()}; gate at {state}; "
          f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n")
    print(table(rounds, statistics.median(gate_starts), statistics.median(nginx_starts)))
    results = {name: [{k: (v.__dict__ if isinstance(v, Run) else v) for k, v in r.items()}
                      for r in runs] for name, runs in rounds.items()}
    results["startup_s"] = {"gate": gate_starts, "nginx": nginx_starts}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nall figures: {work / 'results.json'}; took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the finally below stops what we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        main()
    finally:
        stop_everything()
