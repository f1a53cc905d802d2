//! The chunked decoder and encoder in `http::body::copy_body`, over an in-memory source.
//!
//! Invariants: nothing panics; decoding and re-encoding (what the gate does to a chunked request
//! going up and a chunked response coming down) yields a body that decodes to the same payload,
//! with the same byte count, leaving the same bytes after it (where the next pipelined message
//! starts); re-encoding the re-encoded body is byte-identical (a fixed point); a body the gate
//! refuses or that is cut short never comes out as a complete chunked body; and a body read until
//! close, chunk-encoded (a 1.1 client, an upstream without length), decodes to exactly the input.

#![no_main]

use std::time::Duration;

use duplicati_gate::http::body::{copy_body, BodyError, Encode};
use duplicati_gate::http::inbound::Inbound;
use duplicati_gate::http::message::Framing;
use duplicati_gate_fuzz::show;
use futures::executor::block_on;
use futures::AsyncReadExt;
use libfuzzer_sys::fuzz_target;

/// Never reached: an in-memory source is always ready or at its end.
const IDLE: Duration = Duration::from_secs(3600);

struct Copied {
    result: Result<u64, BodyError>,
    out: Vec<u8>,
    rest: Vec<u8>,
}

fn copy(input: &[u8], framing: Framing, encode: Encode) -> Copied {
    block_on(async {
        let mut src = Inbound::new(input);
        let mut out = Vec::new();
        let result = copy_body(&mut src, framing, &mut out, encode, IDLE).await;
        let mut rest = Vec::new();
        src.read_to_end(&mut rest)
            .await
            .expect("reading the rest of an in-memory source");
        Copied { result, out, rest }
    })
}

fn kind(result: &Result<u64, BodyError>) -> &'static str {
    match result {
        Ok(_) => "Ok",
        Err(BodyError::SourceClosed) => "SourceClosed",
        Err(BodyError::Malformed(_)) => "Malformed",
        Err(BodyError::Timeout) => "Timeout",
        Err(BodyError::Source(_)) => "Source",
        Err(BodyError::Sink(_)) => "Sink",
    }
}

fuzz_target!(|data: &[u8]| {
    let plain = copy(data, Framing::Chunked, Encode::AsIs);
    let encoded = copy(data, Framing::Chunked, Encode::Chunked);
    let ctx = || format!("\ninput:   {}\nencoded: {}", show(data), show(&encoded.out));

    // Decoding does not depend on how the output is written.
    assert_eq!(kind(&plain.result), kind(&encoded.result), "{}", ctx());
    assert!(
        matches!(kind(&plain.result), "Ok" | "SourceClosed" | "Malformed"),
        "{:?}{}",
        plain.result,
        ctx()
    );
    assert_eq!(plain.rest, encoded.rest, "{}", ctx());

    let decoded_again = copy(&encoded.out, Framing::Chunked, Encode::AsIs);
    match plain.result {
        Ok(n) => {
            assert_eq!(n, plain.out.len() as u64, "byte count{}", ctx());
            assert_eq!(encoded.result.as_ref().ok(), Some(&n), "{}", ctx());
            assert!(
                data.ends_with(&plain.rest) && data.len() - plain.rest.len() >= 5,
                "the body did not end where its last chunk is{}",
                ctx()
            );
            assert_eq!(kind(&decoded_again.result), "Ok", "{}", ctx());
            assert_eq!(decoded_again.out, plain.out, "payload changed{}", ctx());
            assert!(
                decoded_again.rest.is_empty(),
                "bytes after the re-encoded body{}",
                ctx()
            );
            let reencoded = copy(&encoded.out, Framing::Chunked, Encode::Chunked);
            assert_eq!(
                show(&reencoded.out),
                show(&encoded.out),
                "re-encoding is not a fixed point{}",
                ctx()
            );
        }
        Err(_) => {
            // What went out before the refusal must not read as a finished body.
            assert_eq!(
                kind(&decoded_again.result),
                "SourceClosed",
                "a refused body reads as complete{}",
                ctx()
            );
        }
    }

    // A body read until close, sent on chunked: the client must get exactly the input.
    let until_close = copy(data, Framing::UntilClose, Encode::Chunked);
    assert!(until_close.result.is_ok(), "{}", ctx());
    let back = copy(&until_close.out, Framing::Chunked, Encode::AsIs);
    assert!(
        back.result.is_ok() && back.out == data && back.rest.is_empty(),
        "until-close body changed{}",
        ctx()
    );
});
