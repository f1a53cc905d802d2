//! The responses the gate writes itself: errors (400, 408, 431, 502, 504, ...) and redirects.
//!
//! Every refusal is a written status with a short page saying why, never a silent close.

use std::io;

use futures::io::{AsyncWrite, AsyncWriteExt};

use crate::http::message::Persistence;

pub fn reason_phrase(status: u16) -> &'static str {
    http_types::StatusCode::try_from(status)
        .map(|code| code.canonical_reason())
        .unwrap_or("Unknown")
}

/// Writes a complete error response and flushes it. Returns the body length.
pub async fn write_error<W: AsyncWrite + Unpin>(
    out: &mut W,
    status: u16,
    detail: &str,
    persistence: Persistence,
    with_body: bool,
    extra_fields: &str,
) -> io::Result<u64> {
    let reason = reason_phrase(status);
    let body = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>{status} {reason}</title>\n\
         <h1>{status} {reason}</h1>\n<p>{}</p>\n<p><small>duplicati-gate</small></p>\n",
        html_escape(detail)
    );
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    );
    if persistence == Persistence::Close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str(extra_fields);
    head.push_str("\r\n");
    if with_body {
        head.push_str(&body);
    }
    out.write_all(head.as_bytes()).await?;
    out.flush().await?;
    Ok(if with_body { body.len() as u64 } else { 0 })
}

/// Writes a permanent redirect to `location` and flushes it.
pub async fn write_redirect<W: AsyncWrite + Unpin>(
    out: &mut W,
    status: u16,
    location: &[u8],
) -> io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {status} {}\r\nLocation: ", reason_phrase(status)).into_bytes();
    head.extend_from_slice(location);
    head.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    out.write_all(&head).await?;
    out.flush().await
}

fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_page_is_a_complete_response_that_says_why() {
        let mut out = Vec::new();
        futures::executor::block_on(write_error(
            &mut out,
            502,
            "Duplicati is not answering at http://127.0.0.1:8200 <refused>",
            Persistence::KeepAlive,
            true,
            "",
        ))
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(
            body.contains("Duplicati is not answering at http://127.0.0.1:8200 &lt;refused&gt;")
        );
    }
}
