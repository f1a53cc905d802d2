//! What a parsed head means for the connection: body framing, keep-alive, upgrade.
//!
//! Every rule that decides where one message ends lives here, so that the gate and Duplicati can
//! never disagree about it (RFC 9112 §6.3; the smuggling forms are the cases where they would).

use super::head::{Head, Malformed};

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Only responses: the body ends when the upstream closes.
    UntilClose,
}

/// Whether the connection stays open after this exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    KeepAlive,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo {
    pub framing: Framing,
    pub persistence: Persistence,
    /// `Connection: upgrade` with an `Upgrade` field (a WebSocket handshake, for Duplicati).
    pub upgrade: bool,
    pub expect_continue: bool,
    pub is_head: bool,
}

/// The tokens of all `Connection` fields that matter to us.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

pub fn connection_tokens(head: &Head) -> ConnectionTokens {
    let mut tokens = ConnectionTokens::default();
    for token in head.values("connection").flat_map(list_items) {
        if token.eq_ignore_ascii_case(b"close") {
            tokens.close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            tokens.keep_alive = true;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            tokens.upgrade = true;
        }
    }
    tokens
}

/// True if `name` is listed in a `Connection` field (and so is hop-by-hop, RFC 9110 §7.6.1).
pub fn named_in_connection(head: &Head, name: &[u8]) -> bool {
    head.values("connection")
        .flat_map(list_items)
        .any(|token| token.eq_ignore_ascii_case(name))
}

/// The items of a comma-separated field value, trimmed, empty items dropped (RFC 9110 §5.6.1).
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Validates a request head and decides its framing.
pub fn classify_request(head: &Head) -> Result<RequestInfo, Malformed> {
    let method = head.method();
    if method == b"CONNECT" {
        return Err(Malformed {
            status: 405,
            reason: "CONNECT is refused: this gate is not a forward proxy",
        });
    }
    let host = single_host(head)?;
    check_target(method, head.target(), host)?;

    let framing = request_framing(head)?;
    let tokens = connection_tokens(head);
    let persistence = if tokens.close || (head.minor_version == 0 && !tokens.keep_alive) {
        Persistence::Close
    } else {
        Persistence::KeepAlive
    };
    let upgrade = head.minor_version == 1 && tokens.upgrade && head.value("upgrade").is_some();

    let mut expect_continue = false;
    for expectation in head.values("expect") {
        if trim(expectation).eq_ignore_ascii_case(b"100-continue") && head.minor_version == 1 {
            expect_continue = true;
        } else {
            return Err(Malformed {
                status: 417,
                reason: "only Expect: 100-continue is supported",
            });
        }
    }
    Ok(RequestInfo {
        framing,
        persistence,
        upgrade,
        expect_continue,
        is_head: method == b"HEAD",
    })
}

/// RFC 9112 §3.2: exactly one Host. Its value is also checked to be a plain authority, because
/// Duplicati builds its host check and cookie domain from it and we build redirects with it.
fn single_host(head: &Head) -> Result<&[u8], Malformed> {
    let mut hosts = head.values("host");
    let host = hosts
        .next()
        .ok_or(Malformed::bad_request("a Host header field is required"))?;
    if hosts.next().is_some() {
        return Err(Malformed::bad_request("more than one Host header field"));
    }
    if host.is_empty() || !host.iter().all(|&b| is_authority_byte(b)) {
        return Err(Malformed::bad_request("invalid Host header field"));
    }
    Ok(host)
}

/// RFC 3986 authority characters without userinfo (`@`): unreserved, sub-delims, `:`, `[`, `]`, `%`.
fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
}

fn check_target(method: &[u8], target: &[u8], host: &[u8]) -> Result<(), Malformed> {
    if target.first() == Some(&b'/') {
        return Ok(());
    }
    if target == b"*" && method == b"OPTIONS" {
        return Ok(());
    }
    // Absolute-form (RFC 9112 §3.2.2). Accepted only when it names the host the client is
    // talking to; anything else would make the gate an open proxy.
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(Malformed::bad_request("invalid request-target"))?;
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    if rest[..end].eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(Malformed::bad_request(
            "absolute-form request-target names another host: this gate is not an open proxy",
        ))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn request_framing(head: &Head) -> Result<Framing, Malformed> {
    let mut te = head.values("transfer-encoding");
    let mut cl = head.values("content-length");
    match (te.next(), cl.next()) {
        (Some(_), Some(_)) => Err(Malformed::bad_request(
            "both Content-Length and Transfer-Encoding: refused as a smuggling attempt",
        )),
        (Some(value), None) => {
            if te.next().is_some() {
                return Err(Malformed::bad_request(
                    "more than one Transfer-Encoding field",
                ));
            }
            if head.minor_version == 0 {
                return Err(Malformed::bad_request(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if trim(value).eq_ignore_ascii_case(b"chunked") {
                Ok(Framing::Chunked)
            } else {
                Err(Malformed {
                    status: 501,
                    reason: "only Transfer-Encoding: chunked is supported",
                })
            }
        }
        (None, Some(value)) => {
            if cl.next().is_some() {
                return Err(Malformed::bad_request("more than one Content-Length field"));
            }
            // `Content-Length: 0` stays declared: a POST without it may get 411 upstream.
            match parse_length(value) {
                Some(n) => Ok(Framing::Length(n)),
                None => Err(Malformed::bad_request("invalid Content-Length")),
            }
        }
        (None, None) => Ok(Framing::None),
    }
}

/// Digits only: no sign, no list, no spaces inside, no overflow.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Framing of a response to a request (RFC 9112 §6.3). `Err` means the upstream sent something
/// we cannot relay unambiguously.
pub fn response_framing(head: &Head, request: &RequestInfo) -> Result<Framing, Malformed> {
    let status = head.status;
    if request.is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Framing::None);
    }
    let te: Vec<&[u8]> = head
        .values("transfer-encoding")
        .flat_map(list_items)
        .collect();
    let mut cl = head.values("content-length");
    let upstream_error = |reason| Malformed {
        status: 502,
        reason,
    };
    match (te.last(), cl.next()) {
        (Some(_), Some(_)) => Err(upstream_error(
            "Duplicati's response had both Content-Length and Transfer-Encoding",
        )),
        (Some(last), None) if last.eq_ignore_ascii_case(b"chunked") => {
            if te.len() == 1 {
                Ok(Framing::Chunked)
            } else {
                Err(upstream_error(
                    "Duplicati's response used an unsupported transfer coding",
                ))
            }
        }
        // RFC 9112 §6.3 rule 4: a final coding other than chunked means "read until close".
        (Some(_), None) => Ok(Framing::UntilClose),
        (None, Some(value)) => {
            let n = parse_length(value).ok_or(upstream_error(
                "Duplicati's response had an invalid Content-Length",
            ))?;
            if cl.any(|other| parse_length(other) != Some(n)) {
                return Err(upstream_error(
                    "Duplicati's response had conflicting Content-Length",
                ));
            }
            Ok(Framing::Length(n))
        }
        (None, None) => Ok(Framing::UntilClose),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(raw: &str) -> Result<RequestInfo, Malformed> {
        let mut head = Head::default();
        head.parse_request(raw.as_bytes())?;
        classify_request(&head)
    }

    #[test]
    fn frames_plain_requests() {
        let info = classify("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(info.framing, Framing::Length(5));
        assert_eq!(info.persistence, Persistence::KeepAlive);
        let info =
            classify("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(info.framing, Framing::Chunked);
        let info = classify("GET /x HTTP/1.0\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(info.persistence, Persistence::Close);
    }

    #[test]
    fn refuses_every_smuggling_form() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b?\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a#\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
            "GET http://evil.example/secret HTTP/1.1\r\nHost: gate.lan\r\n\r\n",
            "GET secret HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for raw in cases {
            let err = classify(raw).expect_err(raw);
            assert_eq!(err.status, 400, "{raw:?}: {err:?}");
        }
        let te = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(classify(te).unwrap_err().status, 501);
        let te = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n";
        assert_eq!(classify(te).unwrap_err().status, 501);
        assert_eq!(
            classify("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")
                .unwrap_err()
                .status,
            405
        );
    }

    #[test]
    fn accepts_absolute_form_for_its_own_host_only() {
        assert!(
            classify("GET http://gate.lan:8443/x HTTP/1.1\r\nHost: gate.lan:8443\r\n\r\n").is_ok()
        );
        assert!(classify("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").is_ok());
    }

    #[test]
    fn recognises_upgrade_and_expect() {
        let info = classify(
            "GET /notifications HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        assert!(info.upgrade);
        let info = classify(
            "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(info.expect_continue);
        assert_eq!(
            classify("PUT /x HTTP/1.1\r\nHost: h\r\nExpect: later\r\n\r\n")
                .unwrap_err()
                .status,
            417
        );
    }

    #[test]
    fn frames_responses_as_rfc_9112_says() {
        let get = classify("GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let head_req = classify("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let frame = |raw: &str, req: &RequestInfo| {
            let mut head = Head::default();
            head.parse_response(raw.as_bytes()).unwrap();
            response_framing(&head, req)
        };
        assert_eq!(
            frame("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &get),
            Ok(Framing::Length(3))
        );
        assert_eq!(
            frame("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &head_req),
            Ok(Framing::None)
        );
        assert_eq!(
            frame(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
                &get
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            frame("HTTP/1.1 200 OK\r\n\r\n", &get),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            frame(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                &get
            ),
            Ok(Framing::None)
        );
        assert_eq!(
            frame("HTTP/1.1 204 No Content\r\n\r\n", &get),
            Ok(Framing::None)
        );
        assert!(frame(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            &get
        )
        .is_err());
        assert!(frame(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            &get
        )
        .is_err());
    }
}
