//! What the fuzz targets share: reading a head the way the gate reads it, and a second, independent
//! reading of every head the gate writes.
//!
//! The second reading is plain httparse into owned fields, with its own list of hop-by-hop names:
//! if it used the gate's `Head`, `values` or `HOP_BY_HOP`, a bug there would check itself.

use duplicati_gate::http::head::read_head;
use duplicati_gate::http::inbound::Inbound;
use futures::executor::block_on;

/// Room for everything a written head can hold: up to `MAX_FIELDS` from the peer plus the few the
/// gate adds. Larger than the gate's own limit so that "too many fields" is never our verdict.
const REPARSE_FIELDS: usize = 256;

/// RFC 9110 §7.6.1 and RFC 9112, written out again rather than taken from `rewrite.rs`.
pub const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

/// Reads one head from `data` with the gate's own reader and limit, as `connection.rs` and
/// `forward.rs` do: leading blank lines skipped, bare LF and oversize refused. Returns its bytes.
pub fn read_one_head(data: &[u8], max: usize) -> Option<Vec<u8>> {
    block_on(async {
        let mut inbound = Inbound::new(data);
        let len = read_head(&mut inbound, max).await.ok()?;
        let head = inbound.buffered()[..len].to_vec();
        assert!(
            head.ends_with(b"\r\n\r\n"),
            "read_head ended a head mid-line"
        );
        // fuzz/regressions/request_head-head-over-limit (fixed): the limit holds for a head
        // that arrives in one read.
        assert!(
            len <= max,
            "read_head accepted a head of {len} bytes over the limit {max}"
        );
        Some(head)
    })
}

/// A head the gate wrote, must be read back by the gate's own reader to exactly its end: the
/// next message (body, pipelined request) must start where the writer thinks it does.
pub fn assert_reads_back_whole(written: &[u8]) {
    let len = block_on(async {
        let mut inbound = Inbound::new(written);
        read_head(&mut inbound, usize::MAX).await
    });
    match len {
        Ok(len) => assert_eq!(
            len,
            written.len(),
            "written head ends early: {}",
            show(written)
        ),
        Err(e) => panic!("written head unreadable ({e:?}): {}", show(written)),
    }
}

/// Owned header fields in order, names as sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields(pub Vec<(Vec<u8>, Vec<u8>)>);

impl Fields {
    fn from_httparse(headers: &[httparse::Header<'_>]) -> Self {
        Fields(
            headers
                .iter()
                .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
                .collect(),
        )
    }

    pub fn values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn count(&self, name: &[u8]) -> usize {
        self.values(name).count()
    }

    /// The one value of `name`; panics (a finding) unless there is exactly one.
    pub fn only<'a>(&'a self, name: &'a [u8], whole: &[u8]) -> &'a [u8] {
        let all: Vec<&[u8]> = self.values(name).collect();
        assert_eq!(
            all.len(),
            1,
            "expected exactly one {} field in {}",
            String::from_utf8_lossy(name),
            show(whole)
        );
        all[0]
    }

    /// Tokens of all `Connection` fields, lowercased.
    pub fn connection_tokens(&self) -> Vec<Vec<u8>> {
        self.values(b"connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| trim(t).to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

pub struct WrittenRequest {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub minor_version: u8,
    pub fields: Fields,
}

pub struct WrittenResponse {
    pub status: u16,
    pub status_text: Vec<u8>,
    pub reason: Vec<u8>,
    pub minor_version: u8,
    pub fields: Fields,
}

/// Reads back a request head the gate wrote; it must parse completely, to its last byte.
pub fn reparse_request(written: &[u8]) -> WrittenRequest {
    let mut storage = [httparse::EMPTY_HEADER; REPARSE_FIELDS];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(written) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, written.len(), "written request head: {}", show(written))
        }
        other => panic!(
            "written request head does not parse ({other:?}): {}",
            show(written)
        ),
    }
    WrittenRequest {
        method: req.method.unwrap_or_default().as_bytes().to_vec(),
        target: req.path.unwrap_or_default().as_bytes().to_vec(),
        minor_version: req.version.unwrap_or(255),
        fields: Fields::from_httparse(req.headers),
    }
}

/// Reads back a response head the gate wrote; it must parse completely, to its last byte.
pub fn reparse_response(written: &[u8]) -> WrittenResponse {
    let mut storage = [httparse::EMPTY_HEADER; REPARSE_FIELDS];
    let mut res = httparse::Response::new(&mut storage);
    match res.parse(written) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, written.len(), "written response head: {}", show(written))
        }
        other => panic!(
            "written response head does not parse ({other:?}): {}",
            show(written)
        ),
    }
    let status_text = status_code_text(written);
    WrittenResponse {
        status: res.code.unwrap_or_default(),
        status_text,
        // From the raw line: httparse returns "" for a reason with obs-text.
        reason: reason_text(written),
        minor_version: res.version.unwrap_or(255),
        fields: Fields::from_httparse(res.headers),
    }
}

/// The status-code as it stands in a status line, read without a parser: the digits after the
/// first run of spaces. RFC 9112 §4 says three; what was received must go out unchanged.
/// The reason phrase as sent: the status line after `HTTP/1.x NNN `, up to CR.
pub fn reason_text(head: &[u8]) -> Vec<u8> {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    line.get(13..).unwrap_or_default().to_vec()
}

pub fn status_code_text(head: &[u8]) -> Vec<u8> {
    let after_version = head.iter().position(|&b| b == b' ').unwrap_or(head.len());
    head[after_version..]
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect()
}

/// Reads a head the peer sent with plain httparse, when the gate accepted it.
pub fn parse_sent_request(head: &[u8]) -> (usize, Fields) {
    let mut storage = [httparse::EMPTY_HEADER; REPARSE_FIELDS];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => (n, Fields::from_httparse(req.headers)),
        other => panic!(
            "the gate accepted a head httparse refuses ({other:?}): {}",
            show(head)
        ),
    }
}

pub fn parse_sent_response(head: &[u8]) -> (usize, Fields) {
    let mut storage = [httparse::EMPTY_HEADER; REPARSE_FIELDS];
    let mut res = httparse::Response::new(&mut storage);
    match res.parse(head) {
        Ok(httparse::Status::Complete(n)) => (n, Fields::from_httparse(res.headers)),
        other => panic!(
            "the gate accepted a head httparse refuses ({other:?}): {}",
            show(head)
        ),
    }
}

pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
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

/// The field lines of a head, sorted: the same fields with the same values, in any order.
pub fn field_lines(head: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter(|l| l.len() > 1)
        .collect();
    lines.sort_unstable();
    lines
}

/// A head for a failure message: escaped, so CR, LF and binary bytes stay visible.
pub fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}
