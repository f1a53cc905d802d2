//! A client's request head, as `connection.rs` takes it: `read_head` → `Head::parse_request` →
//! `classify_request` → `rewrite::upstream_request`.
//!
//! Invariants: nothing panics; a head is refused with a status the gate can write, or accepted with
//! exactly one framing (None, Length or Chunked: never UntilClose, which only responses have) that
//! matches the framing fields the client sent, read independently; the head written to Duplicati
//! reads back, with httparse and with the gate's own reader, to the same method, the byte-identical
//! target, the client's one Host, exactly one framing field that says the same thing, no hop-by-hop
//! field (except the gate's own `Connection: Upgrade` + `Upgrade` on a handshake), exactly one of
//! each X-Forwarded-* and no client-sent forwarding claim, and every end-to-end field in order;
//! and the gate, taking its own written head as a request, classifies it the same way and writes
//! it again byte for byte (a fixed point: Duplicati sees what the gate meant).

#![no_main]

use std::net::IpAddr;

use duplicati_gate::config::Limits;
use duplicati_gate::http::head::{Head, MAX_REQUEST_FIELDS};
use duplicati_gate::http::message::{classify_request, parse_length, Framing};
use duplicati_gate::rewrite::upstream_request;
use duplicati_gate_fuzz::{
    field_lines, is_hop_by_hop, parse_sent_request, read_one_head, reparse_request, show, trim,
};
use libfuzzer_sys::fuzz_target;

/// A verified device's pre-auth token, as `forward.rs` passes it.
const PREAUTH: &str = "tok_0123456789";

/// Statuses `connection.rs` may answer a refused head with (`pages::write_error`).
const REFUSALS: [u16; 6] = [400, 405, 417, 431, 501, 505];

fuzz_target!(|data: &[u8]| {
    let Some(raw) = read_one_head(data, Limits::default().max_head) else {
        return;
    };
    let mut head = Head::default();
    let info = match head
        .parse_request(&raw)
        .and_then(|()| classify_request(&head))
    {
        Ok(info) => info,
        Err(refused) => {
            assert!(
                REFUSALS.contains(&refused.status),
                "refused with {refused:?}: {}",
                show(&raw)
            );
            return;
        }
    };

    // The client's head, read a second time without the gate's bookkeeping.
    let (parsed_len, sent) = parse_sent_request(&raw);
    assert_eq!(
        parsed_len,
        raw.len(),
        "httparse and read_head disagree on where the head ends: {}",
        show(&raw)
    );
    assert_eq!(
        head.target(),
        target_of(&raw),
        "target moved: {}",
        show(&raw)
    );
    let host = sent.only(b"host", &raw).to_vec();

    // One framing, and the one the fields say.
    let te: Vec<&[u8]> = sent.values(b"transfer-encoding").collect();
    let cl: Vec<&[u8]> = sent.values(b"content-length").collect();
    match info.framing {
        Framing::None => assert!(te.is_empty() && cl.is_empty(), "{}", show(&raw)),
        Framing::Length(n) => {
            assert!(te.is_empty() && cl.len() == 1, "{}", show(&raw));
            assert_eq!(decimal(cl[0]), Some(n), "{}", show(&raw));
        }
        Framing::Chunked => {
            assert!(cl.is_empty() && te.len() == 1, "{}", show(&raw));
            assert!(
                trim(te[0]).eq_ignore_ascii_case(b"chunked"),
                "{}",
                show(&raw)
            );
            assert_eq!(
                head.minor_version,
                1,
                "chunked HTTP/1.0 accepted: {}",
                show(&raw)
            );
        }
        Framing::UntilClose => panic!("a request framed until close: {}", show(&raw)),
    }

    let client_ip: IpAddr = if data.len().is_multiple_of(2) {
        IpAddr::from([192, 0, 2, 7])
    } else {
        "2001:db8::7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    };
    let preauth = data.len().is_multiple_of(3).then_some(PREAUTH);
    let mut written = Vec::new();
    upstream_request(
        &head,
        info.framing,
        info.upgrade,
        client_ip,
        preauth,
        &mut written,
    );
    duplicati_gate_fuzz::assert_reads_back_whole(&written);
    let up = reparse_request(&written);
    let ctx = || format!("\nsent:    {}\nwritten: {}", show(&raw), show(&written));

    assert_eq!(up.method, head.method(), "method changed{}", ctx());
    assert_eq!(up.target, head.target(), "target changed{}", ctx());
    assert_eq!(up.minor_version, 1, "{}", ctx());
    assert_eq!(
        up.fields.only(b"host", &written),
        host,
        "Host changed or lost{}",
        ctx()
    );

    let up_te: Vec<&[u8]> = up.fields.values(b"transfer-encoding").collect();
    let up_cl: Vec<&[u8]> = up.fields.values(b"content-length").collect();
    match info.framing {
        Framing::None => assert!(up_te.is_empty() && up_cl.is_empty(), "{}", ctx()),
        Framing::Length(n) => {
            assert!(up_te.is_empty() && up_cl.len() == 1, "{}", ctx());
            assert_eq!(up_cl[0], n.to_string().as_bytes(), "{}", ctx());
        }
        Framing::Chunked => {
            assert!(up_cl.is_empty() && up_te == [b"chunked"], "{}", ctx());
        }
        Framing::UntilClose => unreachable!(),
    }

    for (name, value) in &up.fields.0 {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue; // checked above: only the gate's own
        }
        if is_hop_by_hop(name) {
            let handshake = info.upgrade
                && ((name.eq_ignore_ascii_case(b"connection") && value == b"Upgrade")
                    || name.eq_ignore_ascii_case(b"upgrade"));
            assert!(handshake, "hop-by-hop {} forwarded{}", show(name), ctx());
        }
        assert!(
            !name.eq_ignore_ascii_case(b"forwarded") && !name.eq_ignore_ascii_case(b"x-real-ip"),
            "forwarding claim passed{}",
            ctx()
        );
    }
    if info.upgrade {
        assert_eq!(up.fields.count(b"connection"), 1, "{}", ctx());
        assert_eq!(
            up.fields.only(b"upgrade", &written),
            sent.values(b"upgrade").next().unwrap_or_default(),
            "{}",
            ctx()
        );
    } else {
        assert_eq!(
            up.fields.count(b"connection") + up.fields.count(b"upgrade"),
            0,
            "{}",
            ctx()
        );
    }
    assert_eq!(
        up.fields.only(b"x-forwarded-proto", &written),
        b"https",
        "{}",
        ctx()
    );
    assert_eq!(
        up.fields.only(b"x-forwarded-for", &written),
        client_ip.to_string().as_bytes(),
        "{}",
        ctx()
    );
    assert_eq!(
        up.fields.only(b"x-forwarded-host", &written),
        host,
        "{}",
        ctx()
    );

    // Every end-to-end field the client sent reaches Duplicati, in order, value unchanged.
    // The pre-auth token goes up only for a request without credentials of its own.
    let client_auth = sent.count(b"authorization");
    let added_auth = preauth.is_some() && client_auth == 0;
    if added_auth {
        let expected = format!("PreAuth {PREAUTH}");
        assert_eq!(
            up.fields.only(b"authorization", &written),
            expected.as_bytes(),
            "{}",
            ctx()
        );
    }
    let named = sent.connection_tokens();
    let end_to_end: Vec<&(Vec<u8>, Vec<u8>)> = sent
        .0
        .iter()
        .filter(|(n, _)| {
            let dropped = is_hop_by_hop(n)
                || is_forwarding_claim(n)
                || n.eq_ignore_ascii_case(b"content-length")
                // Host stays even when Connection names it (regression-connection-names-host).
                || (named.contains(&n.to_ascii_lowercase()) && !n.eq_ignore_ascii_case(b"host"));
            !dropped
        })
        .collect();
    let passed: Vec<&(Vec<u8>, Vec<u8>)> = up
        .fields
        .0
        .iter()
        .filter(|(n, _)| !is_gate_added(n, added_auth))
        .collect();
    assert_eq!(passed, end_to_end, "end-to-end fields changed{}", ctx());

    // Stability: the gate reading its own output as a request agrees with itself.
    // Kestrel refuses more than 100 fields (MaxRequestHeaderCount); the gate takes at most
    // MAX_REQUEST_FIELDS from the client so that its own additions never push a request over.
    assert!(
        up.fields.0.len() <= 100,
        "the gate sent {} fields{}",
        up.fields.0.len(),
        ctx()
    );
    if up.fields.0.len() > MAX_REQUEST_FIELDS {
        // The client's fields plus the gate's own: more than the gate takes from a client, so
        // reading its output as a client request would refuse it for that alone.
        return;
    }
    let mut again = Head::default();
    let info_again = again
        .parse_request(&written)
        .and_then(|()| classify_request(&again))
        .unwrap_or_else(|m| panic!("the gate refuses its own upstream head ({m:?}){}", ctx()));
    assert_eq!(info_again.framing, info.framing, "{}", ctx());
    assert_eq!(info_again.upgrade, info.upgrade, "{}", ctx());
    assert_eq!(info_again.is_head, info.is_head, "{}", ctx());
    assert_eq!(
        info_again.expect_continue,
        info.expect_continue,
        "{}",
        ctx()
    );
    let mut rewritten = Vec::new();
    upstream_request(
        &again,
        info_again.framing,
        info_again.upgrade,
        client_ip,
        preauth,
        &mut rewritten,
    );
    if preauth.is_none() {
        assert_eq!(
            show(&rewritten),
            show(&written),
            "upstream_request is not a fixed point{}",
            ctx()
        );
    } else {
        // The token, once written, passes as the client's own credentials: same fields, but
        // among the end-to-end ones rather than after the gate's.
        assert_eq!(
            field_lines(&rewritten),
            field_lines(&written),
            "upstream_request is not a fixed point{}",
            ctx()
        );
    }
});

/// The request-target as the bytes between the first two spaces, without any parser.
fn target_of(raw: &[u8]) -> &[u8] {
    let line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    let line = &raw[..line_end];
    let first = line
        .iter()
        .position(|&b| b == b' ')
        .map_or(line.len(), |i| i + 1);
    let rest = &line[first..];
    let second = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    &rest[..second]
}

/// Content-Length the strict way, written again: 1DIGIT*, OWS trimmed, fits u64.
fn decimal(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let parsed = std::str::from_utf8(value).ok()?.parse().ok();
    // The gate's own parser must agree with this one wherever this one says yes.
    if let Some(n) = parsed {
        assert_eq!(
            parse_length(value),
            Some(n),
            "parse_length({})",
            show(value)
        );
    }
    parsed
}

fn is_forwarding_claim(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"forwarded")
        || name.eq_ignore_ascii_case(b"x-real-ip")
        || (name.len() >= 12 && name[..12].eq_ignore_ascii_case(b"x-forwarded-"))
}

/// The fields `upstream_request` writes itself, after the client's end-to-end ones.
fn is_gate_added(name: &[u8], added_auth: bool) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"connection")
        || name.eq_ignore_ascii_case(b"upgrade")
        || (added_auth && name.eq_ignore_ascii_case(b"authorization"))
        || is_forwarding_claim(name)
}
