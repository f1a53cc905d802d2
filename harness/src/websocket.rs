//! A minimal RFC 6455 client: enough to open `/notifications`, send text, read text and close
//! frames. Hand-rolled so the bytes on the wire are exactly what a browser sends.

use base64::Engine as _;

use crate::client::{Conn, Endpoint, Request, Response};
use crate::error::{Context, Error, Result};

/// RFC 6455 §1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

pub struct WebSocket {
    conn: Conn,
    pub handshake: Response,
}

impl WebSocket {
    /// Opens `target` with an upgrade request; fails unless the answer is a valid 101.
    pub fn connect(endpoint: &Endpoint, target: &str, extra: &[(&str, &str)]) -> Result<WebSocket> {
        let mut key = [0u8; 16];
        crate::random::fill(&mut key)?;
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let mut req = Request::new("GET", target)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", &key)
            .header("Sec-WebSocket-Version", "13")
            .header(
                "Origin",
                &format!("{}://{}", endpoint.scheme(), endpoint.host),
            );
        for (name, value) in extra {
            req = req.header(name, value);
        }
        let mut conn = Conn::connect(endpoint)?;
        let handshake = conn.send(&req)?;
        if handshake.status != 101 {
            crate::bail!("WebSocket upgrade refused:\n{handshake}\nrequest was:\n{req}");
        }
        let expected = accept_for(&key);
        if handshake.header("sec-websocket-accept") != Some(expected.as_str()) {
            crate::bail!("bad Sec-WebSocket-Accept (want {expected}):\n{handshake}");
        }
        Ok(WebSocket { conn, handshake })
    }

    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_frame(0x1, text.as_bytes())
    }

    pub fn close(&mut self, code: u16) -> Result<()> {
        self.send_frame(0x8, &code.to_be_bytes())
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut frame = vec![0x80 | opcode];
        // Client frames are always masked (RFC 6455 §5.3).
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut mask = [0u8; 4];
        crate::random::fill(&mut mask)?;
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.conn.write_all(&frame)
    }

    /// The next data or close message; pings are answered, fragments joined.
    pub fn recv(&mut self) -> Result<Message> {
        let mut fragments: Vec<u8> = Vec::new();
        let mut first_opcode = None;
        loop {
            let head = self
                .conn
                .read_exact_buffered(2)
                .context("reading a WebSocket frame")?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => u16::from_be_bytes(
                    self.conn
                        .read_exact_buffered(2)?
                        .try_into()
                        .unwrap_or([0; 2]),
                ) as usize,
                127 => u64::from_be_bytes(
                    self.conn
                        .read_exact_buffered(8)?
                        .try_into()
                        .unwrap_or([0; 8]),
                ) as usize,
                n => n as usize,
            };
            if masked {
                crate::bail!("server sent a masked frame (RFC 6455 §5.1 forbids it)");
            }
            let payload = self.conn.read_exact_buffered(len)?;
            match opcode {
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                    return Ok(Message::Close(code, reason));
                }
                0x9 => {
                    self.send_frame(0xA, &payload)?;
                    continue;
                }
                0xA => continue,
                // Continuation, text, binary (RFC 6455 §5.2).
                0x0..=0x2 => {
                    if opcode != 0 {
                        first_opcode = Some(opcode);
                    }
                    fragments.extend_from_slice(&payload);
                    if !fin {
                        continue;
                    }
                    return match first_opcode {
                        Some(0x1) => String::from_utf8(fragments)
                            .map(Message::Text)
                            .map_err(|e| Error::msg(format!("text frame is not UTF-8: {e}"))),
                        _ => Ok(Message::Binary(fragments)),
                    };
                }
                other => crate::bail!("unknown WebSocket opcode {other:#x}"),
            }
        }
    }

    /// The next text message, parsed as JSON.
    pub fn recv_json(&mut self) -> Result<serde_json::Value> {
        match self.recv()? {
            Message::Text(text) => serde_json::from_str(&text)
                .with_context(|| format!("WebSocket message is not JSON: {text}")),
            other => crate::bail!("expected a text message, got {other:?}"),
        }
    }
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            super::accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
