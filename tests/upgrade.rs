//! Duplicati's WebSocket (`/notifications`) through the gate: the 101 passes, bytes Duplicati
//! writes right behind it arrive, both directions flow, close codes pass.

mod common;

use std::io::{Read, Write};

use common::{Gate, Next, Upstream};

const HANDSHAKE: &[u8] = b"GET /notifications?token=eyJhbGciOiJIUzI1NiJ9.access.sig HTTP/1.1\r\nHost: backup.lan:8443\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://backup.lan:8443\r\n\r\n";

/// A server text frame (unmasked, as servers send them).
fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text.as_bytes());
    frame
}

#[test]
fn the_websocket_is_tunnelled_with_the_bytes_sent_right_after_101() {
    let status = r#"{"Type":"legacystatus","ProgramState":"Running"}"#;
    let upstream = Upstream::start(move |ex| {
        assert_eq!(ex.header("upgrade").as_deref(), Some("websocket"));
        // The 101 head and Duplicati's first status message in one write, as Kestrel does.
        let mut first =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec();
        first.extend(text_frame(status));
        ex.write(&first);
        // Echo what the client sends, then close with Duplicati's 4401.
        let mut pending = ex.take_buffered();
        let stream = ex.stream();
        while pending.len() < 9 {
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "client bytes never arrived");
            pending.extend_from_slice(&buf[..n]);
        }
        stream.write_all(&pending).unwrap();
        stream.write_all(&[0x88, 0x0f, 0x11, 0x31]).unwrap();
        stream.write_all(b"Invalid token").unwrap();
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(HANDSHAKE);
    let response = client.response();
    assert_eq!(response.status, 101);
    assert_eq!(response.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(
        response.header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        client.read_bytes(2 + status.len()),
        text_frame(status),
        "the message sent right after 101 was lost"
    );

    client.send(b"ping-9-by");
    assert_eq!(client.read_bytes(9), b"ping-9-by");
    let close = client.read_bytes(17);
    assert_eq!(
        &close[..4],
        &[0x88, 0x0f, 0x11, 0x31],
        "close code 4401 passes"
    );
    assert_eq!(&close[4..], b"Invalid token");
    assert!(
        client.is_closed(),
        "Duplicati's close ends the client connection"
    );

    let seen = upstream.wait_for(1);
    assert!(seen[0]
        .request_line()
        .starts_with("GET /notifications?token=eyJhbGciOiJIUzI1NiJ9.access.sig HTTP/1.1"));
    assert_eq!(seen[0].header("connection").as_deref(), Some("Upgrade"));
    assert_eq!(
        seen[0].header("sec-websocket-key").as_deref(),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    let log = gate.wait_for_stderr("/notifications");
    assert!(log.contains("GET /notifications?token=… 101"), "{log}");
    assert!(
        !log.contains("eyJhbGciOiJIUzI1NiJ9"),
        "the access log leaked the token: {log}"
    );
}

#[test]
fn a_refused_upgrade_is_an_ordinary_response() {
    let upstream = Upstream::start(|ex| {
        ex.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        Next::KeepAlive
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(HANDSHAKE);
    assert_eq!(client.response().status, 400);
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        client.response().status,
        400,
        "the connection is still HTTP"
    );
}

#[test]
fn an_unasked_101_is_not_tunnelled() {
    let upstream = Upstream::start(|ex| {
        ex.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        Next::Close
    });
    let gate = Gate::start(&upstream.url(), &[]);
    let mut client = gate.client();
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.response().status, 502);
}
