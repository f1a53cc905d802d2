//! Reading and parsing one HTTP/1.x head (request or response), strictly.
//!
//! The head is copied out of the connection's buffer into a `Vec` that the connection reuses, and
//! header fields are kept as ranges into it: no allocation per field, and every byte the peer
//! sent (the request-target above all) stays exactly as sent.

use std::ops::Range;

use futures::io::AsyncRead;

use super::inbound::Inbound;

/// Header fields per head. Duplicati's UI sends about 15; 100 is what nginx and hyper allow.
pub const MAX_FIELDS: usize = 100;
/// Fields a request may bring: Kestrel refuses more than 100 (MaxRequestHeaderCount) and the
/// gate adds up to 6, so more would pass here and fail at Duplicati with a confusing 431.
pub const MAX_REQUEST_FIELDS: usize = 90;

#[derive(Debug)]
pub enum HeadError {
    /// The peer closed (or sent nothing) before the first byte of a head: a normal end.
    Closed,
    /// The peer closed in the middle of a head.
    Truncated,
    /// The head did not end within the byte limit.
    TooLarge,
    /// A line ended in LF without CR. RFC 9112 §2.2 allows tolerating it; a proxy must not,
    /// because the upstream may split lines differently (request smuggling).
    BareLf,
    Io(std::io::Error),
}

/// Waits until the buffer holds a complete head (ending in CRLF CRLF) and returns its length.
/// The limit applies to the bytes buffered, before any line end is found, so a single endless
/// line cannot grow memory (async-h1 reads a whole line first, then checks).
pub async fn read_head<R: AsyncRead + Unpin>(
    inbound: &mut Inbound<R>,
    max_len: usize,
) -> Result<usize, HeadError> {
    loop {
        if let Some(decided) = buffered_head(inbound, max_len) {
            return decided;
        }
        let had_bytes = !inbound.buffered().is_empty();
        match inbound.fill().await {
            Ok(0) if had_bytes => return Err(HeadError::Truncated),
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// Decides from the bytes already buffered, without reading: `Some` once they hold a complete
/// head or prove a bad one, `None` while more are needed. (Callers skip arming a timer when the
/// head came whole with its first packet, as it nearly always does.)
pub fn buffered_head<R>(
    inbound: &mut Inbound<R>,
    max_len: usize,
) -> Option<Result<usize, HeadError>> {
    // RFC 9112 §2.2: ignore empty lines received before a request-line.
    let blank = leading_blank_lines(inbound.buffered());
    inbound.consume(blank);
    let data = inbound.buffered();
    match find_head_end(data) {
        Err(e) => Some(Err(e)),
        // The limit holds however the head arrived, in one read or many.
        Ok(Some(len)) if len > max_len => Some(Err(HeadError::TooLarge)),
        Ok(Some(len)) => Some(Ok(len)),
        Ok(None) if data.len() >= max_len => Some(Err(HeadError::TooLarge)),
        Ok(None) => None,
    }
}

fn leading_blank_lines(data: &[u8]) -> usize {
    let mut n = 0;
    while data[n..].starts_with(b"\r\n") {
        n += 2;
    }
    n
}

/// Finds the end of the head, rejecting any LF not preceded by CR. (It rescans from the start
/// after each read; heads are small and nearly always arrive whole.)
fn find_head_end(data: &[u8]) -> Result<Option<usize>, HeadError> {
    for i in 0..data.len() {
        if data[i] != b'\n' {
            continue;
        }
        if i == 0 || data[i - 1] != b'\r' {
            return Err(HeadError::BareLf);
        }
        if i >= 3 && &data[i - 3..i] == b"\r\n\r" {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

/// A parsed head: its raw bytes and the ranges of its parts.
#[derive(Default)]
pub struct Head {
    bytes: Vec<u8>,
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// Request: method. Response: empty.
    method: Range<usize>,
    /// Request: request-target. Response: reason phrase.
    target: Range<usize>,
    pub status: u16,
    pub minor_version: u8,
}

/// Why a head could not be parsed, as the status we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    pub status: u16,
    pub reason: &'static str,
}

impl Malformed {
    pub const fn bad_request(reason: &'static str) -> Self {
        Malformed {
            status: 400,
            reason,
        }
    }
}

impl Head {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn method(&self) -> &[u8] {
        &self.bytes[self.method.clone()]
    }

    pub fn target(&self) -> &[u8] {
        &self.bytes[self.target.clone()]
    }

    pub fn reason(&self) -> &[u8] {
        &self.bytes[self.target.clone()]
    }

    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|(n, v)| (&self.bytes[n.clone()], &self.bytes[v.clone()]))
    }

    /// All values of a field, in order. Names compare ASCII-case-insensitively (RFC 9110 §5.1).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Parses a request head of `len` bytes at the front of `data`.
    pub fn parse_request(&mut self, data: &[u8]) -> Result<(), Malformed> {
        self.reset(data);
        let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut storage);
        match req.parse(&self.bytes) {
            Ok(httparse::Status::Complete(_)) if req.headers.len() > MAX_REQUEST_FIELDS => {
                return Err(Malformed {
                    status: 431,
                    reason: "too many header fields",
                })
            }
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Malformed::bad_request("incomplete head")),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Malformed {
                    status: 431,
                    reason: "too many header fields",
                })
            }
            Err(httparse::Error::Version) => {
                return Err(Malformed {
                    status: 505,
                    reason: "only HTTP/1.0 and HTTP/1.1 are spoken here",
                })
            }
            Err(e) => return Err(Malformed::bad_request(parse_error_reason(e))),
        }
        let range = |s: &[u8]| range_within(&self.bytes, s);
        self.method = range(req.method.unwrap_or_default().as_bytes());
        self.target = range(req.path.unwrap_or_default().as_bytes());
        self.minor_version = req.version.unwrap_or(1);
        self.fields.extend(
            req.headers
                .iter()
                .map(|h| (range(h.name.as_bytes()), range(h.value))),
        );
        Ok(())
    }

    /// Parses a response head of `len` bytes at the front of `data`.
    pub fn parse_response(&mut self, data: &[u8]) -> Result<(), Malformed> {
        self.reset(data);
        let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut res = httparse::Response::new(&mut storage);
        match res.parse(&self.bytes) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Malformed::bad_request("incomplete head")),
            Err(e) => return Err(Malformed::bad_request(parse_error_reason(e))),
        }
        let range = |s: &[u8]| range_within(&self.bytes, s);
        self.status = res.code.unwrap_or_default();
        // RFC 9110 §15: three digits, 100 to 599. `099` would go out as `99`, which no client
        // reads.
        if !(100..=599).contains(&self.status) {
            return Err(Malformed::bad_request("status code outside 100-599"));
        }
        // From the raw line: httparse hands back a static "" for an empty or non-ASCII reason.
        self.target = reason_range(&self.bytes);
        self.minor_version = res.version.unwrap_or(1);
        self.fields.extend(
            res.headers
                .iter()
                .map(|h| (range(h.name.as_bytes()), range(h.value))),
        );
        Ok(())
    }

    /// Forgets the previous head (so a refused one is not logged as the one before it).
    pub fn clear(&mut self) {
        self.reset(&[]);
    }

    fn reset(&mut self, data: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(data);
        self.fields.clear();
        self.method = 0..0;
        self.target = 0..0;
        self.status = 0;
    }
}

/// Where `part` sits inside `bytes`; empty if it does not (httparse returns static strings for
/// some parts, and their addresses say nothing about the head).
fn range_within(bytes: &[u8], part: &[u8]) -> Range<usize> {
    let base = bytes.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    match start.checked_sub(base) {
        Some(offset) if offset + part.len() <= bytes.len() => offset..offset + part.len(),
        _ => 0..0,
    }
}

/// The reason phrase: the status line after `HTTP/1.x NNN `, up to its CRLF.
fn reason_range(bytes: &[u8]) -> Range<usize> {
    const BEFORE_REASON: usize = "HTTP/1.1 200 ".len();
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(bytes.len());
    if line_end > BEFORE_REASON {
        BEFORE_REASON..line_end
    } else {
        0..0
    }
}

fn parse_error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "invalid header field name (obs-fold or space before colon?)"
        }
        httparse::Error::HeaderValue => "invalid header field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn read(input: &[u8], max: usize) -> Result<usize, HeadError> {
        block_on(async {
            let mut inbound = Inbound::new(input);
            read_head(&mut inbound, max).await
        })
    }

    #[test]
    fn finds_the_end_of_a_head_and_skips_leading_blank_lines() {
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 1024).unwrap(),
            27
        );
        assert_eq!(read(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 1024).unwrap(), 18);
    }

    #[test]
    fn refuses_bare_lf_anywhere() {
        assert!(matches!(
            read(b"GET / HTTP/1.1\nHost: a\r\n\r\n", 1024),
            Err(HeadError::BareLf)
        ));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost: a\n\n", 1024),
            Err(HeadError::BareLf)
        ));
    }

    #[test]
    fn caps_a_line_that_never_ends() {
        let endless = vec![b'a'; 4096];
        assert!(matches!(read(&endless, 1024), Err(HeadError::TooLarge)));
    }

    #[test]
    fn tells_a_clean_close_from_a_truncated_head() {
        assert!(matches!(read(b"", 1024), Err(HeadError::Closed)));
        assert!(matches!(read(b"GET / HT", 1024), Err(HeadError::Truncated)));
    }

    #[test]
    fn keeps_the_target_byte_for_byte() {
        let raw = b"GET /api/v1/backup/1/files/%2Fhome%2F..%2f//x?time=a%2B02%3A00 HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut head = Head::default();
        head.parse_request(raw).unwrap();
        assert_eq!(
            head.target(),
            &b"/api/v1/backup/1/files/%2Fhome%2F..%2f//x?time=a%2B02%3A00"[..]
        );
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.value("HOST"), Some(&b"h"[..]));
    }

    #[test]
    fn non_ascii_field_values_are_opaque_bytes() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nX-Name: café\r\n\r\n".as_bytes();
        let mut head = Head::default();
        head.parse_request(raw).unwrap();
        assert_eq!(head.value("x-name"), Some("café".as_bytes()));
    }

    #[test]
    fn refuses_obs_fold_and_space_before_colon() {
        let mut head = Head::default();
        assert_eq!(
            head.parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            head.parse_request(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
    }

    // Found by fuzzing (fuzz/regressions/): each of these once panicked or passed wrongly.
    #[test]
    fn response_reasons_that_httparse_does_not_hand_back_are_kept_from_the_raw_line() {
        let mut head = Head::default();
        head.parse_response(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!((head.status, head.reason()), (200, &b""[..]));
        head.parse_response("HTTP/1.1 200 Café\r\n\r\n".as_bytes())
            .unwrap();
        assert_eq!(head.reason(), "Café".as_bytes());
    }

    #[test]
    fn refuses_status_codes_outside_100_to_599() {
        let mut head = Head::default();
        assert!(head.parse_response(b"HTTP/1.1 099 Low\r\n\r\n").is_err());
        assert!(head.parse_response(b"HTTP/1.1 600 High\r\n\r\n").is_err());
    }

    #[test]
    fn the_size_limit_holds_for_a_head_that_arrives_in_one_read() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        raw.resize(20_000, b'a');
        raw.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(read(&raw, 16 * 1024), Err(HeadError::TooLarge)));
    }

    #[test]
    fn refuses_more_request_fields_than_duplicati_takes() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..90 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            Head::default()
                .parse_request(raw.as_bytes())
                .unwrap_err()
                .status,
            431
        );
    }
}
