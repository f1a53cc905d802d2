//! The heads the gate writes: the request to Duplicati and the response to the client.
//!
//! What passes unchanged: the method, the request-target and `Host` (byte for byte: Duplicati
//! derives its host check, cookie domain and cookie name from `Host`), every end-to-end field.
//! What the gate owns: hop-by-hop fields (RFC 9110 §7.6.1, and any named in `Connection`) are
//! dropped both ways; body framing is re-declared; `X-Forwarded-*` are set from what the gate saw
//! and never taken from the client (a forged `X-Forwarded-Proto` must not pass); `Location` naming
//! Duplicati's own origin is turned into the public https origin (Apache's `ProxyPassReverse`);
//! `Set-Cookie` gains `Secure`, since the client side is always TLS.

use std::io::Write;
use std::net::IpAddr;

use crate::http::head::Head;
use crate::http::message::{named_in_connection, Framing, Persistence};

/// RFC 9110 §7.6.1 and RFC 9112 (TE, Transfer-Encoding), plus the pre-standard Proxy-Connection
/// and Keep-Alive.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `Connection: Host` must not strip `Host`: Duplicati needs it, and a request without it is
/// not HTTP/1.1 (found by fuzzing).
fn is_hop_by_hop(head: &Head, name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        || (named_in_connection(head, name) && !name.eq_ignore_ascii_case(b"host"))
}

/// Fields that describe the client to Duplicati. Only the gate may set them.
fn is_forwarding_claim(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"forwarded")
        || name.eq_ignore_ascii_case(b"x-real-ip")
        || (name.len() >= 12 && name[..12].eq_ignore_ascii_case(b"x-forwarded-"))
}

fn is_framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head Duplicati receives into `out`.
pub fn upstream_request(
    head: &Head,
    framing: Framing,
    upgrade: bool,
    client_ip: IpAddr,
    preauth: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(head.method());
    out.push(b' ');
    out.extend_from_slice(head.target());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in head.fields() {
        if is_hop_by_hop(head, name) || is_forwarding_claim(name) || is_framing(name) {
            continue;
        }
        field(out, name, value);
    }
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::UntilClose => {}
    }
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
        field(out, b"Upgrade", head.value("upgrade").unwrap_or_default());
    }
    // A verified device skips Duplicati's password prompt, unless it sent credentials itself.
    if let Some(token) = preauth.filter(|_| head.value("authorization").is_none()) {
        let _ = write!(out, "Authorization: PreAuth {token}\r\n");
    }
    let _ = write!(out, "X-Forwarded-For: {client_ip}\r\n");
    out.extend_from_slice(b"X-Forwarded-Proto: https\r\n");
    field(
        out,
        b"X-Forwarded-Host",
        head.value("host").unwrap_or_default(),
    );
    out.extend_from_slice(b"\r\n");
}

/// How the response body reaches the client, as declared in the head we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    Length(u64),
    Chunked,
    /// HTTP/1.0 client and a body of unknown length: the close ends it.
    UntilClose,
    /// No body; Duplicati's own Content-Length/Transfer-Encoding pass when they describe a
    /// representation (HEAD, 304).
    NoBody {
        keep_declared_length: bool,
    },
    /// 101: the connection becomes a tunnel.
    Upgrade,
}

pub struct PublicOrigin<'a> {
    /// `Host` as the client sent it; the public origin is `https://` + this.
    pub host: &'a [u8],
    /// Duplicati's origin as configured, e.g. `http://127.0.0.1:8200`.
    pub upstream_origin: &'a str,
    /// Tell browsers to use only HTTPS here from now on (not with a self-signed certificate:
    /// HSTS forbids the click-through that certificate needs).
    pub hsts: bool,
}

/// A year, as the HSTS preload list asks; `includeSubDomains` is not ours to decide.
const HSTS: &[u8] = b"Strict-Transport-Security: max-age=31536000\r\n";

/// Writes the response head the client receives into `out`.
pub fn client_response(
    head: &Head,
    framing: ClientFraming,
    persistence: Persistence,
    origin: &PublicOrigin<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    let _ = write!(out, "HTTP/1.1 {} ", head.status);
    out.extend_from_slice(head.reason());
    out.extend_from_slice(b"\r\n");
    let keep_length = matches!(
        framing,
        ClientFraming::NoBody {
            keep_declared_length: true
        }
    );
    for (name, value) in head.fields() {
        if is_framing(name) && keep_length {
            field(out, name, value);
            continue;
        }
        if is_hop_by_hop(head, name) || is_framing(name) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"location") || name.eq_ignore_ascii_case(b"content-location")
        {
            match public_location(value, origin) {
                Some(rewritten) => field(out, name, &rewritten),
                None => field(out, name, value),
            }
        } else if name.eq_ignore_ascii_case(b"set-cookie") && !has_secure_attribute(value) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"; Secure\r\n");
        } else {
            field(out, name, value);
        }
    }
    match framing {
        ClientFraming::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        ClientFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        ClientFraming::Upgrade => {
            out.extend_from_slice(b"Connection: Upgrade\r\n");
            field(out, b"Upgrade", head.value("upgrade").unwrap_or_default());
        }
        ClientFraming::UntilClose | ClientFraming::NoBody { .. } => {}
    }
    if framing != ClientFraming::Upgrade {
        security_fields(head, origin.hsts, out);
    }
    if framing != ClientFraming::Upgrade && persistence == Persistence::Close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Headers Duplicati does not set but a browser facing the network should get; Duplicati's own
/// values win where it sets them.
fn security_fields(head: &Head, hsts: bool, out: &mut Vec<u8>) {
    if hsts && head.value("strict-transport-security").is_none() {
        out.extend_from_slice(HSTS);
    }
    if head.value("x-content-type-options").is_none() {
        out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    }
    if head.value("referrer-policy").is_none() {
        out.extend_from_slice(b"Referrer-Policy: same-origin\r\n");
    }
}

/// `http://<upstream>/x` and `http://<Host>/x` (Duplicati builds absolute URLs from `Host` and
/// thinks it is plain HTTP) become `https://<Host>/x`.
fn public_location(value: &[u8], origin: &PublicOrigin<'_>) -> Option<Vec<u8>> {
    let mut host_origin = b"http://".to_vec();
    host_origin.extend_from_slice(origin.host);
    for prefix in [origin.upstream_origin.as_bytes(), &host_origin] {
        let Some(rest) = value.get(prefix.len()..) else {
            continue;
        };
        let boundary = matches!(rest.first(), None | Some(b'/' | b'?' | b'#'));
        if boundary && value[..prefix.len()].eq_ignore_ascii_case(prefix) {
            let mut public = b"https://".to_vec();
            public.extend_from_slice(origin.host);
            public.extend_from_slice(rest);
            return Some(public);
        }
    }
    None
}

fn has_secure_attribute(set_cookie: &[u8]) -> bool {
    set_cookie.split(|&b| b == b';').skip(1).any(|attr| {
        let attr = crate::http::message::trim(attr);
        let name = attr.split(|&b| b == b'=').next().unwrap_or_default();
        crate::http::message::trim(name).eq_ignore_ascii_case(b"secure")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed_request(raw: &str) -> Head {
        let mut head = Head::default();
        head.parse_request(raw.as_bytes()).unwrap();
        head
    }

    fn parsed_response(raw: &str) -> Head {
        let mut head = Head::default();
        head.parse_response(raw.as_bytes()).unwrap();
        head
    }

    #[test]
    fn removes_all_hop_by_hop_fields_case_insensitively_and_replaces_forwarding_claims() {
        let head = parsed_request(
            "GET /a%2Fb HTTP/1.1\r\nHost: gate.lan:8443\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
             KEEP-ALIVE: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nCookie: a=b\r\n\r\n",
        );
        let mut out = Vec::new();
        upstream_request(
            &head,
            Framing::None,
            false,
            "10.0.0.2".parse().unwrap(),
            None,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a%2Fb HTTP/1.1\r\nHost: gate.lan:8443\r\nCookie: a=b\r\nX-Forwarded-For: 10.0.0.2\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: gate.lan:8443\r\n\r\n"
        );
    }

    #[test]
    fn declares_the_framing_the_gate_sends() {
        let head =
            parsed_request("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut out = Vec::new();
        upstream_request(
            &head,
            Framing::Chunked,
            false,
            "::1".parse().unwrap(),
            None,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("Transfer-Encoding: chunked").count(), 1);
        assert!(!text.contains("Content-Length"));
    }

    #[test]
    fn passes_the_upgrade_handshake() {
        let head = parsed_request(
            "GET /notifications?token=t HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        let mut out = Vec::new();
        upstream_request(
            &head,
            Framing::None,
            true,
            "127.0.0.1".parse().unwrap(),
            None,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /notifications?token=t HTTP/1.1\r\n"));
        assert!(text.contains("Connection: Upgrade\r\nUpgrade: websocket\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: k\r\n"));
    }

    #[test]
    fn rewrites_locations_to_the_public_origin_and_secures_cookies() {
        let head = parsed_response(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:8200/ngclient/?x=1\r\n\
             Content-Location: HTTP://gate.lan:8443/a\r\nSet-Cookie: RefreshToken_8443=j; path=/api/v1/auth/refresh; httponly\r\n\
             Set-Cookie: b=c; Secure\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
        let origin = PublicOrigin {
            host: b"gate.lan:8443",
            upstream_origin: "http://127.0.0.1:8200",
            hsts: false,
        };
        let mut out = Vec::new();
        client_response(
            &head,
            ClientFraming::Length(0),
            Persistence::KeepAlive,
            &origin,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 302 Found\r\nLocation: https://gate.lan:8443/ngclient/?x=1\r\n\
             Content-Location: https://gate.lan:8443/a\r\n\
             Set-Cookie: RefreshToken_8443=j; path=/api/v1/auth/refresh; httponly; Secure\r\n\
             Set-Cookie: b=c; Secure\r\nContent-Length: 0\r\n\
             X-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\n\r\n"
        );
    }

    #[test]
    fn leaves_foreign_and_lookalike_locations_alone() {
        let origin = PublicOrigin {
            host: b"gate.lan",
            upstream_origin: "http://127.0.0.1:8200",
            hsts: false,
        };
        assert_eq!(public_location(b"/relative", &origin), None);
        assert_eq!(public_location(b"http://127.0.0.1:82000/x", &origin), None);
        assert_eq!(public_location(b"http://gate.lan.evil/x", &origin), None);
        assert_eq!(
            public_location(b"http://gate.lan", &origin),
            Some(b"https://gate.lan".to_vec())
        );
    }

    #[test]
    fn adds_the_preauth_token_only_for_requests_without_credentials() {
        let plain = parsed_request("GET /api/v1/backups HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        upstream_request(
            &plain,
            Framing::None,
            false,
            "10.0.0.2".parse().unwrap(),
            Some("tok_0123456789"),
            &mut out,
        );
        assert!(
            String::from_utf8_lossy(&out).contains("\r\nAuthorization: PreAuth tok_0123456789\r\n")
        );
        let bearer = parsed_request(
            "GET /api/v1/backups HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer j\r\n\r\n",
        );
        upstream_request(
            &bearer,
            Framing::None,
            false,
            "10.0.0.2".parse().unwrap(),
            Some("tok_0123456789"),
            &mut out,
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("Authorization: Bearer j") && !text.contains("PreAuth"),
            "{text}"
        );
    }

    #[test]
    fn adds_security_headers_where_duplicati_sets_none() {
        let head = parsed_response(
            "HTTP/1.1 200 OK\r\nReferrer-Policy: no-referrer\r\nContent-Length: 0\r\n\r\n",
        );
        let origin = PublicOrigin {
            host: b"h",
            upstream_origin: "http://127.0.0.1:8200",
            hsts: true,
        };
        let mut out = Vec::new();
        client_response(
            &head,
            ClientFraming::Length(0),
            Persistence::KeepAlive,
            &origin,
            &mut out,
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("Strict-Transport-Security: max-age=31536000\r\n"));
        assert!(text.contains("X-Content-Type-Options: nosniff\r\n"));
        assert_eq!(
            text.matches("Referrer-Policy").count(),
            1,
            "Duplicati's own value wins"
        );
        let origin = PublicOrigin {
            hsts: false,
            ..origin
        };
        client_response(
            &head,
            ClientFraming::Length(0),
            Persistence::KeepAlive,
            &origin,
            &mut out,
        );
        assert!(!String::from_utf8(out)
            .unwrap()
            .contains("Strict-Transport-Security"));
    }

    #[test]
    fn connection_naming_host_does_not_strip_host() {
        let head =
            parsed_request("GET / HTTP/1.1\r\nHost: gate.lan:8443\r\nConnection: Host\r\n\r\n");
        let mut out = Vec::new();
        upstream_request(
            &head,
            Framing::None,
            false,
            "10.0.0.2".parse().unwrap(),
            None,
            &mut out,
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nHost: gate.lan:8443\r\n"));
    }
}
