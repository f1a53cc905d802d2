//! Streaming a body from one side to the other, never holding it whole.
//!
//! Chunked bodies are decoded strictly and re-encoded (without chunk extensions or trailers), so
//! what reaches the other side has exactly one reading, whatever tricks the sender tried.

use std::io;
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::inbound::Inbound;
use super::message::Framing;

/// A chunk-size line with its extensions; RFC 9112 leaves it unbounded, we do not.
const MAX_CHUNK_LINE: usize = 4096;
/// All trailer fields together (they are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// How the bytes are written on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    AsIs,
    Chunked,
}

#[derive(Debug)]
pub enum BodyError {
    /// The sender closed before the body ended.
    SourceClosed,
    Source(io::Error),
    Sink(io::Error),
    /// Bad chunked framing: answered with 400 (from a client) or cut off (from upstream).
    Malformed(&'static str),
    /// The sender went quiet for longer than the idle limit.
    Timeout,
}

/// Copies one body. Returns the number of payload bytes.
pub async fn copy_body<R, W>(
    src: &mut Inbound<R>,
    framing: Framing,
    dst: &mut W,
    encode: Encode,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Sink { dst, encode };
    let copied = match framing {
        Framing::None => 0,
        Framing::Length(n) => copy_exact(src, n, &mut out, idle).await?,
        Framing::UntilClose => copy_until_close(src, &mut out, idle).await?,
        Framing::Chunked => copy_chunked(src, &mut out, idle).await?,
    };
    out.finish().await?;
    Ok(copied)
}

struct Sink<'a, W> {
    dst: &'a mut W,
    encode: Encode,
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    async fn write(&mut self, data: &[u8]) -> Result<(), BodyError> {
        if data.is_empty() {
            return Ok(());
        }
        let result = match self.encode {
            Encode::AsIs => self.dst.write_all(data).await,
            Encode::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                let dst = &mut *self.dst;
                async {
                    dst.write_all(size.as_bytes()).await?;
                    dst.write_all(data).await?;
                    dst.write_all(b"\r\n").await
                }
                .await
            }
        };
        result.map_err(BodyError::Sink)
    }

    async fn finish(&mut self) -> Result<(), BodyError> {
        if self.encode == Encode::Chunked {
            self.dst
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(BodyError::Sink)?;
        }
        Ok(())
    }
}

async fn fill<R: AsyncRead + Unpin>(
    src: &mut Inbound<R>,
    idle: Duration,
) -> Result<usize, BodyError> {
    match async_std::io::timeout(idle, src.fill()).await {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(BodyError::Timeout),
        Err(e) => Err(BodyError::Source(e)),
    }
}

async fn copy_exact<R, W>(
    src: &mut Inbound<R>,
    mut remaining: u64,
    out: &mut Sink<'_, W>,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let total = remaining;
    while remaining > 0 {
        if src.buffered().is_empty() && fill(src, idle).await? == 0 {
            return Err(BodyError::SourceClosed);
        }
        let data = src.buffered();
        let n = data
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        out.write(&data[..n]).await?;
        src.consume(n);
        remaining -= n as u64;
    }
    Ok(total)
}

async fn copy_until_close<R, W>(
    src: &mut Inbound<R>,
    out: &mut Sink<'_, W>,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total = 0;
    loop {
        if src.buffered().is_empty() && fill(src, idle).await? == 0 {
            return Ok(total);
        }
        let n = src.buffered().len();
        out.write(src.buffered()).await?;
        src.consume(n);
        total += n as u64;
    }
}

async fn copy_chunked<R, W>(
    src: &mut Inbound<R>,
    out: &mut Sink<'_, W>,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total: u64 = 0;
    loop {
        let line = read_line(src, MAX_CHUNK_LINE, idle).await?;
        let size = parse_chunk_size(&src.buffered()[..line])?;
        src.consume(line);
        if size == 0 {
            skip_trailers(src, idle).await?;
            return Ok(total);
        }
        copy_exact(src, size, out, idle).await?;
        total = total.saturating_add(size);
        let crlf = read_line(src, 2, idle).await?;
        if crlf != 2 {
            return Err(BodyError::Malformed("chunk data longer than its size"));
        }
        src.consume(2);
    }
}

/// Waits for a CRLF-terminated line of at most `max` bytes; returns its length including CRLF.
async fn read_line<R: AsyncRead + Unpin>(
    src: &mut Inbound<R>,
    max: usize,
    idle: Duration,
) -> Result<usize, BodyError> {
    loop {
        let data = src.buffered();
        let window = &data[..data.len().min(max)];
        if let Some(lf) = window.iter().position(|&b| b == b'\n') {
            if lf == 0 || window[lf - 1] != b'\r' {
                return Err(BodyError::Malformed("bare LF in chunked framing"));
            }
            return Ok(lf + 1);
        }
        if data.len() >= max {
            return Err(BodyError::Malformed("chunk line too long"));
        }
        if fill(src, idle).await? == 0 {
            return Err(BodyError::SourceClosed);
        }
    }
}

/// `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1): 1-16 hex digits, optional extensions that
/// we validate and drop.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let line = &line[..line.len() - 2];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    let rest = &line[digits..];
    let ext_ok = rest.is_empty()
        || (rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b';')
            && rest
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)));
    if !ext_ok {
        return Err(BodyError::Malformed("invalid chunk extension"));
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        (n << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
    });
    Ok(size)
}

async fn skip_trailers<R: AsyncRead + Unpin>(
    src: &mut Inbound<R>,
    idle: Duration,
) -> Result<(), BodyError> {
    let mut seen = 0;
    loop {
        let line = read_line(src, MAX_TRAILERS - seen, idle).await?;
        let is_end = line == 2;
        let valid = is_end || src.buffered()[..line].contains(&b':');
        src.consume(line);
        if is_end {
            return Ok(());
        }
        if !valid {
            return Err(BodyError::Malformed("invalid trailer field"));
        }
        seen += line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    const IDLE: Duration = Duration::from_secs(1);

    fn copy(
        input: &[u8],
        framing: Framing,
        encode: Encode,
    ) -> (Result<u64, BodyError>, Vec<u8>, Vec<u8>) {
        block_on(async {
            let mut src = Inbound::new(input);
            let mut out = Vec::new();
            let result = copy_body(&mut src, framing, &mut out, encode, IDLE).await;
            let mut rest = Vec::new();
            futures::AsyncReadExt::read_to_end(&mut src, &mut rest)
                .await
                .unwrap();
            (result, out, rest)
        })
    }

    #[test]
    fn copies_exactly_content_length_and_leaves_the_rest() {
        let (result, out, rest) = copy(b"helloGET /next", Framing::Length(5), Encode::AsIs);
        assert_eq!(result.unwrap(), 5);
        assert_eq!(out, b"hello");
        assert_eq!(rest, b"GET /next");
    }

    #[test]
    fn decodes_chunked_and_reencodes_without_extensions_or_trailers() {
        let input = b"5;name=\"v\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let (result, out, rest) = copy(input, Framing::Chunked, Encode::Chunked);
        assert_eq!(result.unwrap(), 11);
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        assert_eq!(rest, b"NEXT");
        let (_, out, _) = copy(input, Framing::Chunked, Encode::AsIs);
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn refuses_bad_chunk_framing() {
        let bad: [&[u8]; 6] = [
            b"x\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
        ];
        for input in bad {
            let (result, _, _) = copy(input, Framing::Chunked, Encode::AsIs);
            assert!(
                matches!(result, Err(BodyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn reports_a_body_cut_short() {
        let (result, _, _) = copy(b"hel", Framing::Length(5), Encode::AsIs);
        assert!(matches!(result, Err(BodyError::SourceClosed)));
        let (result, out, _) = copy(b"5\r\nhello\r\n", Framing::Chunked, Encode::Chunked);
        assert!(matches!(result, Err(BodyError::SourceClosed)));
        assert!(
            !out.ends_with(b"0\r\n\r\n"),
            "a cut body must never look complete"
        );
    }

    #[test]
    fn reads_until_close() {
        let (result, out, _) = copy(b"all of it", Framing::UntilClose, Encode::Chunked);
        assert_eq!(result.unwrap(), 9);
        assert_eq!(out, b"9\r\nall of it\r\n0\r\n\r\n");
    }
}
