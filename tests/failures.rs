//! When Duplicati is down, slow or dies mid-response, and when the client speaks plain HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{dead_port, plain_request, Gate, Next, Upstream};

#[test]
fn a_dead_upstream_gets_a_502_page_that_says_so_within_3_seconds() {
    let dead = dead_port();
    let gate = Gate::start(&format!("http://{dead}"), &[]);
    let mut client = gate.client();
    let started = Instant::now();
    client.send(b"GET /ngclient/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.response();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(response.status, 502);
    assert!(
        response
            .text()
            .contains(&format!("Duplicati is not answering at http://{dead}")),
        "{}",
        response.text()
    );
    // The connection stays usable: the next request gets its own answer.
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().status, 502);
}

#[test]
fn an_unanswered_request_gets_504() {
    let upstream = Upstream::start(|ex| {
        std::thread::sleep(Duration::from_secs(4));
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &["--upstream-timeout", "1"]);
    let mut client = gate.client();
    client.send(b"GET /api/v1/serverstate?longpoll=true HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 504);
    assert!(response.text().contains("did not answer within 1 s"));
    assert!(gate
        .stderr()
        .contains("warning: --upstream-timeout 1: shorter than Duplicati 2.0's 299 s long-poll"));
}

#[test]
fn an_upstream_dying_mid_response_is_seen_as_truncated_never_complete() {
    let upstream = Upstream::start(|ex| {
        let target = String::from_utf8_lossy(&ex.head)
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string();
        if target == "/chunked" {
            ex.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        } else {
            ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello");
        }
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = client.read_bytes(20);
    assert!(head.starts_with(b"HTTP/1.1 200 OK"));
    let rest = {
        let mut rest = Vec::new();
        loop {
            let more = client.read_bytes(1);
            if more.is_empty() {
                break rest;
            }
            rest.extend(more);
        }
    };
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("5\r\nhello\r\n") && !text.contains("0\r\n\r\n"),
        "looked complete: {text:?}"
    );

    let mut client = gate.client();
    client.send(b"GET /length HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut got = Vec::new();
    loop {
        let more = client.read_bytes(1);
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("Content-Length: 100") && text.ends_with("\r\n\r\nhello"),
        "{text:?}"
    );
}

#[test]
fn a_stale_pooled_connection_is_retried_for_idempotent_requests() {
    // Duplicati's side closes every connection right after answering, without saying so.
    let upstream = Upstream::start(|ex| {
        ex.body();
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    // Back to back, the close often arrives after the pool's check (the retry path); after a
    // pause the check itself sees it. Both must answer every request once.
    for i in 0..10 {
        client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(client.response().status, 200, "request {i}");
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        upstream.wait_for(10).len(),
        10,
        "each GET reached Duplicati exactly once"
    );
}

#[test]
fn plain_http_gets_a_permanent_redirect_on_either_port() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &["--redirect-http", "127.0.0.1:0"]);
    let tls_port = gate.addr.port();
    let redirect = gate.redirect.unwrap();

    let answer = plain_request(
        redirect,
        b"GET /ngclient/restore?filter=%40%2Fsrc%2F HTTP/1.1\r\nHost: backup.lan\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!(
            "Location: https://backup.lan:{tls_port}/ngclient/restore?filter=%40%2Fsrc%2F\r\n"
        )),
        "{answer}"
    );

    let answer = plain_request(
        redirect,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: backup.lan:80\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{answer}"
    );

    // A browser told http:// for the TLS port gets a redirect too, not a TLS alert or a hang.
    let answer = plain_request(
        gate.addr,
        b"GET /x HTTP/1.1\r\nHost: localhost:8443\r\n\r\n",
    );
    assert!(
        answer.contains(&format!("Location: https://localhost:{tls_port}/x\r\n")),
        "{answer}"
    );

    let answer = plain_request(redirect, b"GET / HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(upstream.recorded().is_empty());
}

#[test]
fn the_redirect_names_the_public_https_port() {
    let upstream = Upstream::ok();
    let gate = Gate::start(
        &upstream.url(),
        &["--redirect-http", "127.0.0.1:0", "--https-port", "443"],
    );
    let answer = plain_request(
        gate.redirect.unwrap(),
        b"GET /a?b HTTP/1.1\r\nHost: backup.lan\r\n\r\n",
    );
    assert!(
        answer.contains("Location: https://backup.lan/a?b\r\n"),
        "{answer}"
    );
}
