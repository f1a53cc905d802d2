//! Faults with nothing lost: Duplicati restarting, clients leaving mid-upload, clients that do
//! not read, more clients than the gate serves at once.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gate, Next, Upstream};

/// Serves `count` requests with 200 on one accepted connection, then closes the
/// connection and the listener: Duplicati going down.
fn serve_then_stop(listener: TcpListener, count: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        for _ in 0..count {
            while common::find(&buf, b"\r\n\r\n").is_none() {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            let end = common::find(&buf, b"\r\n\r\n").unwrap() + 4;
            buf.drain(..end);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nbefore")
                .unwrap();
        }
    })
}

#[test]
fn after_duplicati_restarts_the_next_request_succeeds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let first_life = serve_then_stop(listener, 1);
    let gate = Gate::start(&format!("http://{addr}"), &[]);
    let mut client = gate.client();
    client.send(b"GET /api/v1/serverstate HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().text(), "before");
    first_life.join().unwrap();

    // Duplicati comes back on the same port; the pooled connection to the old one is dead.
    let listener = TcpListener::bind(addr).expect("rebind the upstream port");
    let second_life = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        while common::find(&head, b"\r\n\r\n").is_none() {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).unwrap();
            head.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter")
            .unwrap();
    });
    client.send(b"GET /api/v1/serverstate HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "after"),
        "{}",
        gate.stderr()
    );
    second_life.join().unwrap();
}

#[test]
fn a_post_is_never_retried_on_a_dead_pooled_connection() {
    let posts = Arc::new(AtomicUsize::new(0));
    let seen = posts.clone();
    let upstream = Upstream::start(move |ex| {
        ex.body();
        if ex.head.starts_with(b"POST") {
            seen.fetch_add(1, Ordering::SeqCst);
            // Take the POST, then die without answering.
            return Next::Close;
        }
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.send(b"POST /api/v1/backup/1/run HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(client.response().status, 502);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        posts.load(Ordering::SeqCst),
        1,
        "a POST must reach Duplicati at most once"
    );
}

#[test]
fn a_client_leaving_mid_upload_closes_the_upstream_connection() {
    let upload_ended = Arc::new(AtomicBool::new(false));
    let ended = upload_ended.clone();
    let upstream = Upstream::start(move |ex| {
        if ex.head.starts_with(b"POST") {
            let body = ex.body();
            // The gate closed the connection: the body is short and nothing more comes.
            assert!(body.len() < 1_000_000, "got {} bytes", body.len());
            ended.store(true, Ordering::SeqCst);
            return Next::Close;
        }
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    {
        let mut client = gate.client();
        client.send(
            b"POST /api/v1/backups/import HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n",
        );
        client.send(&[b'x'; 100_000]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !upload_ended.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        upload_ended.load(Ordering::SeqCst),
        "the upstream connection stayed open after the client left"
    );
    let mut client = gate.client();
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.response().status, 200);
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        2,
        "the cut connection must not be reused"
    );
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_client_that_does_not_read_cannot_make_the_gate_buffer() {
    const SIZE: usize = 256 * 1024 * 1024;
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let upstream = Upstream::start(move |ex| {
        ex.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes());
        let block = vec![b'd'; 64 * 1024];
        let stream = ex.stream();
        while progress.load(Ordering::SeqCst) < SIZE {
            if stream.write_all(&block).is_err() {
                break;
            }
            progress.fetch_add(block.len(), Ordering::SeqCst);
        }
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let rss_before = rss_kib(gate.pid());
    let mut client = gate.client();
    client.send(b"GET /api/v1/backup/1/export HTTP/1.1\r\nHost: h\r\n\r\n");
    std::thread::sleep(Duration::from_secs(3));
    let stalled_at = written.load(Ordering::SeqCst);
    let rss_stalled = rss_kib(gate.pid());
    // Socket buffers on three hops hold some megabytes; the gate itself holds one 32 KiB buffer.
    assert!(
        stalled_at < 48 * 1024 * 1024,
        "Duplicati could push {stalled_at} bytes into a client that reads nothing"
    );
    assert!(
        rss_stalled < rss_before + 16 * 1024,
        "the gate grew from {rss_before} KiB to {rss_stalled} KiB"
    );
    let response = client.response();
    assert_eq!(
        response.body.len(),
        SIZE,
        "once the client reads, everything arrives"
    );
}

#[test]
fn past_the_connection_limit_clients_get_a_503() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &["--max-connections", "2"]);
    let mut first = gate.client();
    let mut second = gate.client();
    first.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(first.response().status, 200);
    second.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(second.response().status, 200);
    let mut third = gate.client();
    third.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let response = third.response();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after").as_deref(), Some("5"));
    assert!(response.text().contains("maximum of 2 connections"));
    drop(first);
    // Once a slot frees up, clients are served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = gate.client();
        next.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        if next.response().status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed after a client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        upstream.recorded().len(),
        3,
        "the refused request was not forwarded"
    );
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The descriptor count once it holds still: the gate's signal and housekeeping tasks open
/// theirs just after it prints its address.
fn settled_fds(pid: i32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = (open_fds(pid), 0);
    while last.1 < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = open_fds(pid);
        last = if now == last.0 {
            (now, last.1 + 1)
        } else {
            (now, 0)
        };
    }
    last.0
}

#[test]
fn idle_upstream_connections_that_duplicati_closed_are_let_go() {
    // Duplicati answers and then closes, without saying so: each pooled connection goes stale.
    let upstream = Upstream::start(|ex| {
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        std::thread::sleep(Duration::from_millis(300));
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let baseline = settled_fds(gate.pid());
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (addr, der) = (gate.addr, gate.cert().der.clone());
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr, &der);
                client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
                assert_eq!(client.response().status, 200);
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 10);
    // Housekeeping runs every 2 s; without it the stale sockets sit in CLOSE-WAIT until the
    // next request.
    let deadline = Instant::now() + Duration::from_secs(8);
    while open_fds(gate.pid()) > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", gate.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        open_fds(gate.pid()),
        baseline,
        "descriptors did not return to baseline: {fds:?}"
    );
}
