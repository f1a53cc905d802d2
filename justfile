# duplicati-gate tasks. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

target := "x86_64-unknown-linux-gnu"
gate_image := "duplicati-gate:e2e"
standin_image := "duplicati-standin:e2e"
# Current stable Duplicati (research/duplicati-wire.md §5: 2.3.0.4, 2026-07-09).
duplicati_stable := "duplicati/duplicati:2.3.0.4"

# Unit and integration tests: no root, no Docker.
test:
    cargo test --workspace --locked

# Static (static-pie glibc) binaries of the gate and the stand-in for the scratch images.
static:
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target {{target}} -p duplicati-gate -p duplicati-standin

# Build both images offline: the gate from the host binary (Dockerfile stage runtime-prebuilt), the stand-in from a context holding only its binary.
image: _docker static
    mkdir -p target/docker-empty
    @# Legacy builder on purpose: BuildKit in the 28.x CLI needs buildx, which this engine lacks.
    DOCKER_BUILDKIT=0 docker build --target runtime-prebuilt -t {{gate_image}} .
    @test -f harness/standin/Dockerfile || { echo "error: harness/standin/Dockerfile is missing" >&2; exit 1; }
    rm -rf target/standin-image && mkdir -p target/standin-image
    cp target/{{target}}/release/duplicati-standin harness/standin/Dockerfile target/standin-image/
    DOCKER_BUILDKIT=0 docker build -t {{standin_image}} target/standin-image
    docker image ls --format '{{{{.Repository}}:{{{{.Tag}}  {{{{.Size}}' | grep -E '^(duplicati-gate|duplicati-standin):e2e '

# End-to-end: containers, client namespace, sniffer. Needs root and Docker; fails (never skips) without them.
e2e: _root _docker image
    cargo test --locked --features e2e --test e2e -- --test-threads=1 --nocapture

# End-to-end against the real Duplicati image (pulled only if absent; needs a registry). The 2.0-profile test still uses the stand-in.
e2e-real image=duplicati_stable: _root _docker
    docker image inspect {{image}} >/dev/null 2>&1 || docker pull {{image}}
    just image
    DUPLICATI_IMAGE={{image}} cargo test --locked --features e2e --test e2e -- --test-threads=1 --nocapture

# The gate beside nginx, same upstream and load (bench/bench.py; ~6 min, figures printed, never asserted, not in `ci`). `just bench --rounds 1` for a quick look.
bench *args:
    @command -v wrk >/dev/null && test -x /usr/sbin/nginx && test -f /usr/lib/nginx/modules/ngx_http_echo_module.so && command -v cc >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nginx libnginx-mod-http-echo wrk gcc libc6-dev openssl; }
    cargo build --release --locked -p duplicati-gate
    python3 bench/bench.py {{args}}

# Load and soak: thousands of keep-alive TLS clients, 256 MiB transfers, WebSockets and a 1 GiB download and upload against the gate in front of the stand-in (harness/soak; ~4 min with the defaults, not in `ci`). Exit 1 on any error, digest mismatch or descriptor leak. `just soak --duration 20 --connections 200` for a short one.
soak *args:
    cargo build --release --locked -p duplicati-gate -p duplicati-standin -p duplicati-soak
    target/release/soak {{args}}

# Everything CI runs: the packages, formatting, lints on all targets, tests, end-to-end, the TLS scan, 20 s of fuzzing per target.
ci: deps fmt-check clippy test e2e tls-scan (fuzz "20")

fmt-check:
    cargo fmt --all -- --check

clippy:
    cargo clippy --workspace --all-targets --locked --features e2e -- -D warnings

_root:
    @if [ "$(id -u)" != 0 ]; then echo "error: the end-to-end tests need root (network namespaces, veth pairs, packet capture): run 'sudo just e2e'" >&2; exit 1; fi

_docker:
    @command -v docker >/dev/null || { echo "error: no docker CLI on PATH: install Docker Engine (Debian: apt-get install docker.io)" >&2; exit 1; }
    @docker version --format 'Docker engine {{{{.Server.Version}} (API {{{{.Server.APIVersion}})' || { echo "error: the Docker engine does not answer: start dockerd, or check access to /var/run/docker.sock" >&2; exit 1; }

# Fuzz the HTTP codec (request heads, response heads, chunked bodies), each target for SECONDS, one job each; `just fuzz 20` is the short mode. Stable Rust runs cargo-fuzz's nightly flags under RUSTC_BOOTSTRAP=1.
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    # The version these targets were set up with; newer ones may pass flags stable rustc lacks.
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
    export RUSTC_BOOTSTRAP=1
    # -O -a: optimised, with overflow checks and debug assertions (an overflow is a finding too).
    cargo fuzz build -O -a
    mkdir -p fuzz/target/logs
    for t in request_head response_head chunked_body; do
        # New inputs go to fuzz/target/corpus (ignored, kept between runs); fuzz/corpus holds the committed seeds.
        mkdir -p fuzz/target/corpus/$t
        if ! cargo fuzz run -O -a $t fuzz/target/corpus/$t fuzz/corpus/$t -- \
            -max_total_time={{seconds}} -timeout=10 -print_final_stats=1 >fuzz/target/logs/$t.log 2>&1; then
            tail -n 60 fuzz/target/logs/$t.log
            echo "error: fuzz target $t failed; the input is in fuzz/artifacts/$t/, the log in fuzz/target/logs/$t.log (keep the input in fuzz/regressions/)" >&2
            exit 1
        fi
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz/target/logs/$t.log)
        cov=$(grep -E '^#[0-9]+' fuzz/target/logs/$t.log | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
        echo "$t: ${execs:-?} executions in {{seconds}} s, no finding ($cov)"
    done

# testssl.sh (Debian's package) against the gate: no finding at MEDIUM or above (about 2.5 min).
tls-scan:
    @command -v testssl >/dev/null || { echo "error: testssl.sh is missing: apt-get install testssl.sh" >&2; exit 1; }
    cargo test --locked --features tls-scan --test tls_scan -- --nocapture

# Debian packages the tests need, installed if missing (root): libpcap-dev (sniffer), iproute2 (namespace, veth), openssl (PKCS#12 and key tests), testssl.sh (TLS scan).
deps:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in libpcap-dev iproute2 openssl testssl.sh; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then echo "error: missing packages ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2; exit 1; fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
