//! Plain HTTP: every request gets a permanent redirect to `https://HOST[:PORT]/same/path?same=query`.
//!
//! Serves both the `--redirect-http` listener and plain-HTTP requests that arrive on the TLS port
//! (a browser told `http://host:8443`), which would otherwise see a TLS alert or a hang.

use std::net::SocketAddr;
use std::time::Instant;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::accesslog::Entry;
use crate::gate::Gate;
use crate::http::head::{read_head, Head, HeadError};
use crate::http::inbound::Inbound;
use crate::http::message::{classify_request, Persistence};
use crate::pages;

/// Answers one request on a plain connection, then closes it.
pub async fn answer<S>(stream: S, peer: SocketAddr, gate: &Gate)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (limits, https_port) = (&gate.limits, gate.https_port);
    let (reader, mut writer) = stream.split();
    let mut inbound = Inbound::new(reader);
    let started = Instant::now();
    let mut head = Head::default();
    let read = async_std::future::timeout(
        limits.head_timeout,
        read_head(&mut inbound, limits.max_head),
    )
    .await;
    let refusal = match read {
        Err(_) => Some((408, "the request head did not arrive in time")),
        Ok(Err(HeadError::Closed | HeadError::Truncated | HeadError::Io(_))) => return,
        Ok(Err(HeadError::TooLarge)) => Some((431, "the request head is too large")),
        Ok(Err(HeadError::BareLf)) => Some((400, "lines must end in CRLF")),
        Ok(Ok(len)) => head
            .parse_request(&inbound.buffered()[..len])
            .and_then(|()| classify_request(&head).map(|_| ()))
            .err()
            .map(|m| (m.status, m.reason)),
    };
    let status = match refusal {
        Some((status, reason)) => {
            let _ =
                pages::write_error(&mut writer, status, reason, Persistence::Close, true, "").await;
            status
        }
        None if !gate.access.allow.permits(peer.ip()) => {
            let reason = format!(
                "{} is not allowed to reach Duplicati here",
                peer.ip().to_canonical()
            );
            let _ =
                pages::write_error(&mut writer, 403, &reason, Persistence::Close, true, "").await;
            403
        }
        None => {
            let location = https_location(&head, https_port);
            // 301 for GET/HEAD as browsers expect; 308 keeps the method and body of anything else.
            let status = if matches!(head.method(), b"GET" | b"HEAD") {
                301
            } else {
                308
            };
            let _ = pages::write_redirect(&mut writer, status, &location).await;
            status
        }
    };
    Entry {
        client: peer.ip().to_canonical(),
        method: if head.method().is_empty() {
            b"-"
        } else {
            head.method()
        },
        target: head.target(),
        status,
        bytes: 0,
        elapsed: started.elapsed(),
    }
    .emit();
}

/// `https://` + the Host's name + the HTTPS port unless 443 + the path and query as sent.
pub fn https_location(head: &Head, https_port: u16) -> Vec<u8> {
    let host = head.value("host").unwrap_or_default();
    let name = host_without_port(host);
    let mut location = b"https://".to_vec();
    location.extend_from_slice(name);
    if https_port != 443 {
        location.extend_from_slice(format!(":{https_port}").as_bytes());
    }
    location.extend_from_slice(origin_form(head.target()));
    location
}

fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        let end = host
            .iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1);
        return &host[..end];
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// The path and query of an origin- or absolute-form target (`*` becomes `/`).
fn origin_form(target: &[u8]) -> &[u8] {
    if target.first() == Some(&b'/') {
        return target;
    }
    let after_scheme = target
        .windows(3)
        .position(|w| w == b"://")
        .map_or(target.len(), |i| i + 3);
    let rest = &target[after_scheme..];
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(start) if rest[start] == b'/' => &rest[start..],
        _ => b"/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(raw: &str, port: u16) -> String {
        let mut head = Head::default();
        head.parse_request(raw.as_bytes()).unwrap();
        String::from_utf8(https_location(&head, port)).unwrap()
    }

    #[test]
    fn keeps_path_and_query_and_swaps_the_port() {
        assert_eq!(
            location("GET /ngclient/restore?filter=%40%2Fsrc%2F HTTP/1.1\r\nHost: backup.lan:8080\r\n\r\n", 443),
            "https://backup.lan/ngclient/restore?filter=%40%2Fsrc%2F"
        );
        assert_eq!(
            location("GET / HTTP/1.1\r\nHost: backup.lan\r\n\r\n", 8443),
            "https://backup.lan:8443/"
        );
        assert_eq!(
            location("GET /x HTTP/1.1\r\nHost: [fd00::1]:80\r\n\r\n", 8443),
            "https://[fd00::1]:8443/x"
        );
        assert_eq!(
            location("GET http://h:80/p?q HTTP/1.1\r\nHost: h:80\r\n\r\n", 443),
            "https://h/p?q"
        );
        assert_eq!(
            location("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 443),
            "https://h/"
        );
    }
}
