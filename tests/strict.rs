//! Strict by default: every ambiguous or hostile request gets a written refusal and never reaches
//! Duplicati.

mod common;

use std::time::{Duration, Instant};

use common::{Gate, Upstream};

/// Sends `raw` on a fresh connection and returns the status the gate wrote.
fn refusal(gate: &Gate, raw: &[u8]) -> u16 {
    let mut client = gate.client();
    client.send(raw);
    let response = client.response();
    assert_eq!(
        response.header("connection").as_deref(),
        Some("close"),
        "{:?}",
        String::from_utf8_lossy(raw)
    );
    assert!(
        client.is_closed(),
        "the gate must close after refusing {:?}",
        String::from_utf8_lossy(raw)
    );
    response.status
}

#[test]
fn every_smuggling_form_is_refused_with_a_written_status() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let cases: &[(&[u8], u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b?\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    ];
    for (raw, status) in cases {
        assert_eq!(
            refusal(&gate, raw),
            *status,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // Bad chunk framing is found while the body streams: still a 400, and the connection ends.
    let mut client = gate.client();
    client.send(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(client.response().status, 400);
    assert!(client.is_closed());
    let forwarded = upstream.recorded();
    assert!(
        forwarded
            .iter()
            .all(|r| r.request_line().starts_with("POST / ") && r.raw_body.is_empty()),
        "a refused request reached Duplicati: {forwarded:?}"
    );
}

#[test]
fn the_gate_is_never_an_open_proxy() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    assert_eq!(
        refusal(
            &gate,
            b"GET http://evil.example/secret HTTP/1.1\r\nHost: localhost\r\n\r\n"
        ),
        400
    );
    assert_eq!(
        refusal(
            &gate,
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"
        ),
        405
    );
    assert_eq!(
        refusal(
            &gate,
            b"GET evil.example HTTP/1.1\r\nHost: localhost\r\n\r\n"
        ),
        400
    );
    assert!(upstream.recorded().is_empty());
}

#[test]
fn an_oversized_head_gets_431_before_its_line_ends() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    // One header line of 64 KiB with no end: refused once the limit is reached, not at the LF.
    let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    raw.resize(raw.len() + 64 * 1024, b'a');
    client.send(&raw);
    assert_eq!(client.response().status, 431);
    assert!(upstream.recorded().is_empty());
}

#[test]
fn a_slow_head_is_cut_off_while_others_are_served() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &["--head-timeout", "2"]);
    let mut slow = gate.client();
    let started = Instant::now();
    slow.send(b"GET / HTTP/1.1\r\n");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        slow.send(b"X-Drip: 1\r\n");
        // Meanwhile a normal client is served at once.
        let mut other = gate.client();
        other.send(b"GET /other HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(other.response().status, 200);
    }
    let response = slow.response();
    assert_eq!(response.status, 408);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "cut off after {waited:?}"
    );
    assert!(slow.is_closed());
}

#[test]
fn a_malformed_request_after_a_good_one_does_not_lose_the_first_answer() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET /good HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n");
    assert_eq!(client.response().status, 200);
    assert_eq!(client.response().status, 400);
    assert_eq!(upstream.wait_for(1).len(), 1);
}
