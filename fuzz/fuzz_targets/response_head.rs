//! Duplicati's response head, as `forward.rs` takes it: `read_head` → `Head::parse_response` →
//! `response_framing` → the choice of client framing → `rewrite::client_response`.
//!
//! The first input byte describes the request being answered (HEAD or not, HTTP/1.0 or 1.1,
//! WebSocket handshake, `Connection: close`, body sent whole or cut short by an early response);
//! the rest is the response.
//!
//! Invariants: nothing panics; a response is refused (502) or written to the client with the same
//! three-digit status and reason and exactly one reading of where its body ends: one
//! `Content-Length` or one `Transfer-Encoding: chunked`, or neither with `Connection: close`, or
//! none needed (HEAD, 204, 304, 101), never both; no hop-by-hop field beyond the gate's own; every
//! cookie `Secure`; and the gate's framing rules, applied to what it wrote, agree with what it
//! meant, and writing it again changes nothing.

#![no_main]

use duplicati_gate::http::head::{Head, MAX_FIELDS};
use duplicati_gate::http::message::{response_framing, Framing, Persistence, RequestInfo};
use duplicati_gate::rewrite::{client_response, ClientFraming, PublicOrigin};
use duplicati_gate_fuzz::{
    field_lines, is_hop_by_hop, parse_sent_response, read_one_head, reparse_response, show,
};
use libfuzzer_sys::fuzz_target;

/// `forward.rs` `MAX_RESPONSE_HEAD` (private there).
const MAX_RESPONSE_HEAD: usize = 24 * 1024;

struct Exchange {
    info: RequestInfo,
    client_is_11: bool,
    body_complete: bool,
    origin: PublicOrigin<'static>,
}

fn exchange(flags: u8) -> Exchange {
    let client_is_11 = flags & 0b10 == 0;
    let close = flags & 0b1000 != 0 || !client_is_11;
    Exchange {
        info: RequestInfo {
            framing: Framing::None,
            persistence: if close {
                Persistence::Close
            } else {
                Persistence::KeepAlive
            },
            upgrade: flags & 0b100 != 0 && client_is_11,
            expect_continue: false,
            is_head: flags & 0b1 != 0,
        },
        client_is_11,
        body_complete: flags & 0b10000 == 0,
        origin: PublicOrigin {
            host: b"gate.lan:8443",
            upstream_origin: "http://127.0.0.1:8200",
            hsts: flags & 0b100000 != 0,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, response)) = data.split_first() else {
        return;
    };
    let ex = exchange(flags);
    let Some(raw) = read_one_head(response, MAX_RESPONSE_HEAD) else {
        return;
    };
    let mut head = Head::default();
    if head.parse_response(&raw).is_err() {
        return;
    }
    let (parsed_len, sent) = parse_sent_response(&raw);
    assert_eq!(
        parsed_len,
        raw.len(),
        "httparse and read_head disagree on where the head ends: {}",
        show(&raw)
    );
    let status = head.status;
    if (100..200).contains(&status) && status != 101 {
        return; // interim: skipped, or answered with the gate's own fixed `100 Continue`
    }

    let (client_framing, persistence) = if status == 101 {
        if !ex.info.upgrade || !ex.body_complete {
            return; // refused with 502
        }
        (ClientFraming::Upgrade, Persistence::KeepAlive)
    } else {
        let framing = match response_framing(&head, &ex.info) {
            Ok(framing) => framing,
            Err(refused) => {
                assert_eq!(refused.status, 502, "{}", show(&raw));
                return;
            }
        };
        // Copied from `forward::exchange`, where it is not a function of its own.
        let client_framing = match framing {
            Framing::None => ClientFraming::NoBody {
                keep_declared_length: ex.info.is_head || status == 304,
            },
            Framing::Length(n) => ClientFraming::Length(n),
            Framing::Chunked | Framing::UntilClose if ex.client_is_11 => ClientFraming::Chunked,
            Framing::Chunked | Framing::UntilClose => ClientFraming::UntilClose,
        };
        let persistence = if ex.info.persistence == Persistence::Close
            || !ex.body_complete
            || client_framing == ClientFraming::UntilClose
        {
            Persistence::Close
        } else {
            Persistence::KeepAlive
        };
        (client_framing, persistence)
    };

    let mut written = Vec::new();
    client_response(&head, client_framing, persistence, &ex.origin, &mut written);
    duplicati_gate_fuzz::assert_reads_back_whole(&written);
    let out = reparse_response(&written);
    let ctx = || {
        format!(
            "\nflags:   {flags:#07b} ({client_framing:?}, {persistence:?})\nsent:    {}\nwritten: {}",
            show(&raw),
            show(&written)
        )
    };

    assert_eq!(out.status, status, "status changed{}", ctx());
    let received = duplicati_gate_fuzz::status_code_text(&raw);
    assert_eq!(
        out.status_text,
        received,
        "status-code not written as received{}",
        ctx()
    );
    assert_eq!(
        out.reason,
        duplicati_gate_fuzz::reason_text(&raw),
        "reason changed{}",
        ctx()
    );
    assert_eq!(out.minor_version, 1, "{}", ctx());

    // Exactly one framing, as the client will read it.
    let te: Vec<&[u8]> = out.fields.values(b"transfer-encoding").collect();
    let cl: Vec<&[u8]> = out.fields.values(b"content-length").collect();
    let close_tokens = out
        .fields
        .connection_tokens()
        .iter()
        .filter(|t| t.as_slice() == b"close")
        .count();
    match client_framing {
        ClientFraming::Length(n) => {
            assert!(
                te.is_empty() && cl == [n.to_string().as_bytes()],
                "{}",
                ctx()
            )
        }
        ClientFraming::Chunked => assert!(cl.is_empty() && te == [b"chunked"], "{}", ctx()),
        ClientFraming::UntilClose => {
            assert!(
                cl.is_empty() && te.is_empty() && close_tokens == 1,
                "{}",
                ctx()
            )
        }
        ClientFraming::NoBody {
            keep_declared_length: false,
        }
        | ClientFraming::Upgrade => {
            assert!(cl.is_empty() && te.is_empty(), "{}", ctx())
        }
        ClientFraming::NoBody {
            keep_declared_length: true,
        } => {
            // They describe the representation (RFC 9110 §8.6); the status says there is no body.
            let sent_te: Vec<&[u8]> = sent.values(b"transfer-encoding").collect();
            let sent_cl: Vec<&[u8]> = sent.values(b"content-length").collect();
            assert!(te == sent_te && cl == sent_cl, "{}", ctx());
        }
    }
    assert_eq!(
        close_tokens,
        usize::from(persistence == Persistence::Close && client_framing != ClientFraming::Upgrade),
        "{}",
        ctx()
    );

    let mut reread = Head::default();
    if out.fields.0.len() <= MAX_FIELDS {
        reread.parse_response(&written).unwrap_or_else(|m| {
            panic!(
                "the gate cannot read its own response head ({m:?}){}",
                ctx()
            )
        });
        let client_reads = response_framing(&reread, &ex.info).unwrap_or_else(|m| {
            panic!("the gate's own response head is ambiguous ({m:?}){}", ctx())
        });
        let expected = match client_framing {
            ClientFraming::Length(n) => Framing::Length(n),
            ClientFraming::Chunked => Framing::Chunked,
            ClientFraming::UntilClose => Framing::UntilClose,
            ClientFraming::NoBody { .. } | ClientFraming::Upgrade => Framing::None,
        };
        assert_eq!(
            client_reads,
            expected,
            "the client reads another framing{}",
            ctx()
        );
    }

    // Hop-by-hop fields: only the gate's own.
    for (name, value) in &out.fields.0 {
        if !is_hop_by_hop(name) {
            continue;
        }
        let own = (name.eq_ignore_ascii_case(b"connection")
            && (value == b"close"
                || (value == b"Upgrade" && client_framing == ClientFraming::Upgrade)))
            || (name.eq_ignore_ascii_case(b"upgrade") && client_framing == ClientFraming::Upgrade)
            || name.eq_ignore_ascii_case(b"transfer-encoding");
        assert!(
            own,
            "hop-by-hop {} passed to the client{}",
            show(name),
            ctx()
        );
    }
    if client_framing == ClientFraming::Upgrade {
        assert_eq!(
            out.fields.only(b"connection", &written),
            b"Upgrade",
            "{}",
            ctx()
        );
        assert_eq!(
            out.fields.only(b"upgrade", &written),
            sent.values(b"upgrade").next().unwrap_or_default(),
            "{}",
            ctx()
        );
    }

    // Every cookie Duplicati set reaches the client, marked Secure.
    let named = sent.connection_tokens();
    if !named.iter().any(|t| t.as_slice() == b"set-cookie") {
        let sent_cookies: Vec<&[u8]> = sent.values(b"set-cookie").collect();
        let out_cookies: Vec<&[u8]> = out.fields.values(b"set-cookie").collect();
        assert_eq!(sent_cookies.len(), out_cookies.len(), "{}", ctx());
        for (before, after) in sent_cookies.iter().zip(&out_cookies) {
            assert!(after.starts_with(before), "cookie changed{}", ctx());
            // RFC 6265 §5.2: an attribute's name is what precedes its `=`, trimmed; a browser
            // takes `Secure=anything` as Secure.
            let secure = after.split(|&b| b == b';').skip(1).any(|attr| {
                let name = attr.split(|&b| b == b'=').next().unwrap_or_default();
                duplicati_gate_fuzz::trim(name).eq_ignore_ascii_case(b"secure")
            });
            assert!(secure, "cookie without Secure{}", ctx());
        }
    }

    // Writing the written head again changes nothing. Not when Duplicati sent a field named
    // `close`: the gate's own `Connection: close` then names it, and the second pass drops it
    // (correctly: a field named in Connection is hop-by-hop).
    if out.fields.0.len() <= MAX_FIELDS && sent.count(b"close") == 0 {
        let mut again = Vec::new();
        client_response(&reread, client_framing, persistence, &ex.origin, &mut again);
        // The security fields the gate added now pass as Duplicati's own: same lines, but among
        // Duplicati's fields rather than after the framing.
        assert_eq!(
            field_lines(&again),
            field_lines(&written),
            "client_response is not a fixed point{}",
            ctx()
        );
        assert_eq!(
            again.split(|&b| b == b'\n').next(),
            written.split(|&b| b == b'\n').next(),
            "{}",
            ctx()
        );
    }
});
