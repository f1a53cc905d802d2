//! What Duplicati receives through the gate, byte for byte, and what the client gets back.

mod common;

use common::{decode_chunked, Gate, Next, Upstream};

fn get(target: &str, host: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

#[test]
fn request_targets_reach_duplicati_byte_for_byte() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let targets = [
        // Duplicati 2.0 restore browsing: the folder in the path, slashes encoded.
        "/api/v1/backup/1/files/%2Fhome%2Fuser%2F?prefix-only=false&folder-contents=true&time=2026-08-22T10%3A15%3A30%2B02%3A00&filter=%2Fhome%2Fuser%2F",
        // 2.1+: the folder in the query, with %40 (the literal-path marker) and %2B in the time.
        "/api/v1/backup/1/files?prefix-only=false&folder-contents=true&time=2026-08-22T10%3A15%3A30%2B02%3A00&filter=%40%2Fsource%2Fsub%20dir%2F",
        "/api/v1/backup/1/files/C%3A%5CUsers%5Cme%5C?filter=%40C%3A%5CUsers%5Cme%5C",
        "/a/%2e%2e/b",
        "/a/../b",
        "/a/./b//c",
        "//x",
        "/..%2f..%2fetc",
        "/a%252Fb",
        "/%7Euser/caf%C3%A9?q=a+b&r=%26%3D",
        "/files/*report*?filter=*report*",
    ];
    let mut client = gate.client();
    for target in targets {
        client.send(&get(target, "localhost"));
        assert_eq!(client.response().status, 200, "{target}");
    }
    let seen = upstream.wait_for(targets.len());
    for (target, recorded) in targets.iter().zip(&seen) {
        assert_eq!(
            recorded.request_line(),
            format!("GET {target} HTTP/1.1"),
            "the gate changed the target"
        );
    }
}

#[test]
fn host_is_preserved_and_forwarding_headers_are_the_gates_own() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(
        b"GET /api/v1/serverstate HTTP/1.1\r\nHost: Backup.LAN:8443\r\nX-Forwarded-Proto: http\r\n\
          X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6;proto=http\r\n\
          X-Forwarded-Prefix: /evil\r\nX-Real-IP: 6.6.6.6\r\nCookie: RefreshToken_8443=abc\r\n\r\n",
    );
    assert_eq!(client.response().status, 200);
    let seen = &upstream.wait_for(1)[0];
    assert_eq!(seen.headers("host"), vec![b"Backup.LAN:8443".to_vec()]);
    assert_eq!(
        seen.headers("x-forwarded-proto"),
        vec![b"https".to_vec()],
        "a forged X-Forwarded-Proto passed"
    );
    assert_eq!(seen.headers("x-forwarded-for"), vec![b"127.0.0.1".to_vec()]);
    assert_eq!(
        seen.headers("x-forwarded-host"),
        vec![b"Backup.LAN:8443".to_vec()]
    );
    assert!(seen.headers("forwarded").is_empty() && seen.headers("x-forwarded-prefix").is_empty());
    assert!(seen.headers("x-real-ip").is_empty());
    assert_eq!(
        seen.header("cookie").as_deref(),
        Some("RefreshToken_8443=abc")
    );
}

#[test]
fn hop_by_hop_fields_are_dropped_both_ways() {
    let upstream = Upstream::start(|ex| {
        ex.write(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Upstream-Hop\r\nKeep-Alive: timeout=5\r\n\
              X-Upstream-Hop: 1\r\nX-End-To-End: 2\r\nContent-Length: 0\r\n\r\n",
        );
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Client-Hop\r\nX-Client-Hop: 1\r\n\
          TE: trailers\r\nProxy-Authorization: Basic eDp5\r\nKeep-Alive: 300\r\nX-Kept: yes\r\n\r\n",
    );
    let response = client.response();
    assert!(response.header("x-upstream-hop").is_none() && response.header("keep-alive").is_none());
    assert_eq!(response.header("x-end-to-end").as_deref(), Some("2"));
    let seen = &upstream.wait_for(1)[0];
    for hop in [
        "connection",
        "x-client-hop",
        "te",
        "proxy-authorization",
        "keep-alive",
    ] {
        assert!(
            seen.headers(hop).is_empty(),
            "{hop} reached Duplicati: {}",
            String::from_utf8_lossy(&seen.head)
        );
    }
    assert_eq!(seen.header("x-kept").as_deref(), Some("yes"));
}

#[test]
fn locations_point_at_the_public_https_origin_and_cookies_are_secure() {
    let upstream = Upstream::start(|ex| {
        let host = ex.header("host").unwrap();
        let reply = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{host}/ngclient/\r\n\
             Set-Cookie: RefreshToken_8443=jwt; expires=Sat, 26 Dec 2026 10:00:00 GMT; domain=backup.lan; path=/api/v1/auth/refresh; samesite=strict; httponly\r\n\
             Content-Length: 0\r\n\r\n"
        );
        ex.write(reply.as_bytes());
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(&get("/", "backup.lan:8443"));
    let response = client.response();
    assert_eq!(
        response.header("location").as_deref(),
        Some("https://backup.lan:8443/ngclient/")
    );
    let cookie = response.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("RefreshToken_8443=jwt; expires=")
            && cookie.ends_with("; httponly; Secure"),
        "{cookie}"
    );
}

#[test]
fn bodies_stream_both_ways_in_every_framing() {
    let upstream = Upstream::start(|ex| {
        let body = ex.body();
        let target = String::from_utf8_lossy(&ex.head)
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string();
        match target.as_str() {
            "/chunked" => {
                ex.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for piece in body.chunks(7000) {
                    ex.write(format!("{:x}\r\n", piece.len()).as_bytes());
                    ex.write(piece);
                    ex.write(b"\r\n");
                }
                ex.write(b"0\r\n\r\n");
                Next::KeepAlive
            }
            "/close-delimited" => {
                ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
                ex.write(&body);
                Next::Close
            }
            _ => {
                ex.write(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                ex.write(&body);
                Next::KeepAlive
            }
        }
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut client = gate.client();

    let mut request = format!(
        "POST /length HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(&payload);
    client.send(&request);
    let response = client.response();
    assert_eq!(response.body, payload, "Content-Length upload echoed");

    let mut request =
        b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in payload.chunks(50_000) {
        request.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    client.send(&request);
    let response = client.response();
    assert_eq!(
        response.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert_eq!(
        response.body, payload,
        "chunked upload and chunked download"
    );

    let mut request = format!(
        "PUT /close-delimited HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(&payload);
    client.send(&request);
    let response = client.response();
    assert_eq!(
        response.header("transfer-encoding").as_deref(),
        Some("chunked"),
        "re-framed for keep-alive"
    );
    assert_eq!(response.body, payload, "close-delimited download");

    let seen = upstream.wait_for(3);
    let chunked = seen
        .iter()
        .find(|r| r.request_line().starts_with("POST /chunked"))
        .unwrap();
    assert_eq!(
        chunked.headers("transfer-encoding"),
        vec![b"chunked".to_vec()]
    );
    assert_eq!(decode_chunked(&chunked.raw_body).unwrap(), payload);
    assert!(
        !String::from_utf8_lossy(&chunked.raw_body).contains("ext=1"),
        "chunk extensions are dropped"
    );
    assert!(seen
        .iter()
        .all(|r| r.headers("content-length").len() + r.headers("transfer-encoding").len() == 1));
}

#[test]
fn head_204_and_304_are_framed_without_a_body() {
    let upstream = Upstream::start(|ex| {
        let request_line = String::from_utf8_lossy(&ex.head)
            .lines()
            .next()
            .unwrap()
            .to_string();
        let reply: &[u8] = if request_line.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n"
        } else if request_line.contains("/nocontent") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
        };
        ex.write(reply);
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"HEAD /big HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.response_to(true);
    assert_eq!(
        response.header("content-length").as_deref(),
        Some("12345"),
        "HEAD keeps the declared length"
    );
    client.send(&get("/nocontent", "localhost"));
    assert_eq!(client.response().status, 204);
    client.send(&get("/cached", "localhost"));
    assert_eq!(client.response().status, 304);
    client.send(&get("/nocontent", "localhost"));
    assert_eq!(
        client.response().status,
        204,
        "the connection is still in step"
    );
}

#[test]
fn thousands_of_requests_share_one_client_and_one_upstream_connection() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    for i in 0..2000 {
        client.send(&get(&format!("/api/v1/progressstate?n={i}"), "localhost"));
        assert_eq!(client.response().body, b"ok");
    }
    upstream.wait_for(2000);
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the upstream connection was not reused"
    );
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let upstream = Upstream::start(|ex| {
        let target = String::from_utf8_lossy(&ex.head)
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string();
        ex.write(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{target}",
                target.len()
            )
            .as_bytes(),
        );
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\nGET /three HTTP/1.1\r\nHost: h\r\n\r\n");
    for expected in ["/one", "/two", "/three"] {
        assert_eq!(client.response().text(), expected);
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_final_response() {
    let upstream = Upstream::start(|ex| {
        assert_eq!(ex.header("expect").as_deref(), Some("100-continue"));
        ex.write(b"HTTP/1.1 100 Continue\r\n\r\n");
        let body = ex.body();
        ex.write(
            format!(
                "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        ex.write(&body);
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"POST /api/v1/backups/import HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    // The client holds its body until it sees 100 Continue, as curl and .NET do.
    let interim = client.response();
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    let last = client.response();
    assert_eq!(
        (last.status, last.body.as_slice()),
        (201, b"hello".as_slice())
    );
}

#[test]
fn an_early_final_response_is_relayed_and_the_connection_closed() {
    let upstream = Upstream::start(|ex| {
        ex.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\npartial");
    let response = client.response();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(
        client.is_closed(),
        "the unread body must not be parsed as a next request"
    );
}

#[test]
fn non_ascii_header_bytes_pass_as_opaque_bytes() {
    let upstream = Upstream::ok();
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send("GET / HTTP/1.1\r\nHost: h\r\nX-Name: café ü\r\n\r\n".as_bytes());
    assert_eq!(client.response().status, 200);
    assert_eq!(
        upstream.wait_for(1)[0].headers("x-name"),
        vec!["café ü".as_bytes().to_vec()]
    );
}

#[test]
fn http_1_0_clients_are_served_and_closed() {
    let upstream = Upstream::start(|ex| {
        ex.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET / HTTP/1.0\r\nHost: h\r\n\r\n");
    let response = client.response();
    assert!(
        response.header("transfer-encoding").is_none(),
        "no chunked to an HTTP/1.0 client"
    );
    assert_eq!(response.body, b"abc");
}
