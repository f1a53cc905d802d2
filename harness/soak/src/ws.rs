//! A minimal WebSocket client for `/notifications` (RFC 6455): the upgrade, masked text frames
//! out, unmasked frames in, pings answered, and the close handshake.

use aws_lc_rs::{digest, rand};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::conn::{Conn, Failure};

/// RFC 6455 §1.3: appended to the key before hashing for Sec-WebSocket-Accept.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Duplicati's messages are a few KiB; a frame claiming more than this is a framing error.
const MAX_FRAME: u64 = 1 << 20;

pub struct Ws {
    conn: Conn,
}

pub enum Incoming {
    Text(String),
    Close(Option<u16>),
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Only fails if the OS has no randomness at all; a fixed mask still frames correctly.
    let _ = rand::fill(&mut b);
    b
}

impl Ws {
    /// Upgrades a fresh connection with `?token=` (the 2.1 way in) and returns the socket with
    /// the first message, which the stand-in sends right after the 101.
    pub async fn open(mut conn: Conn, host: &str, token: &str) -> Result<(Ws, Value), Failure> {
        let key = STANDARD.encode(random::<16>());
        let req = format!(
            "GET /notifications?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.send(req.as_bytes()).await?;
        let head = conn.head().await?;
        if head.status != 101 {
            return Err(Failure::new(
                "status",
                format!("upgrade answered {} instead of 101", head.status),
            ));
        }
        let want = STANDARD.encode(digest::digest(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            format!("{key}{GUID}").as_bytes(),
        ));
        if head.header("sec-websocket-accept") != Some(want.as_bytes()) {
            return Err(Failure::new("protocol", "wrong Sec-WebSocket-Accept"));
        }
        let mut ws = Ws { conn };
        let first = match ws.next().await? {
            Incoming::Text(t) => serde_json::from_str::<Value>(&t)
                .map_err(|e| Failure::new("protocol", format!("first message not JSON: {e}")))?,
            Incoming::Close(code) => {
                return Err(Failure::new(
                    "closed",
                    format!("closed ({code:?}) instead of the first message"),
                ))
            }
        };
        Ok((ws, first))
    }

    /// RFC 6455 §5.3: every client frame is masked with a fresh key.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Failure> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = random::<4>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.conn.send(&frame).await
    }

    pub async fn send_text(&mut self, text: &str) -> Result<(), Failure> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    /// The next text message or close; pings are answered and pongs skipped on the way.
    pub async fn next(&mut self) -> Result<Incoming, Failure> {
        let mut message: Vec<u8> = Vec::new();
        loop {
            let (fin, opcode, payload) = self.frame().await?;
            match opcode {
                0x0 | 0x1 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message)
                            .map(Incoming::Text)
                            .map_err(|_| Failure::new("protocol", "text frame not UTF-8"));
                    }
                }
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Incoming::Close(code));
                }
                0x9 => self.send_frame(0xA, &payload).await?,
                0xA => {}
                other => {
                    return Err(Failure::new(
                        "protocol",
                        format!("unexpected opcode {other:#x}"),
                    ))
                }
            }
        }
    }

    async fn frame(&mut self) -> Result<(bool, u8, Vec<u8>), Failure> {
        const DURING: &str = "a WebSocket frame";
        self.conn.need(2, DURING).await?;
        let b = self.conn.buffered();
        let (fin, opcode, masked, len7) =
            (b[0] & 0x80 != 0, b[0] & 0x0F, b[1] & 0x80 != 0, b[1] & 0x7F);
        if masked {
            return Err(Failure::new(
                "protocol",
                "server frame is masked (RFC 6455 §5.1)",
            ));
        }
        let (header, len) = match len7 {
            126 => {
                self.conn.need(4, DURING).await?;
                let b = self.conn.buffered();
                (4, u64::from(u16::from_be_bytes([b[2], b[3]])))
            }
            127 => {
                self.conn.need(10, DURING).await?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.conn.buffered()[2..10]);
                (10, u64::from_be_bytes(n))
            }
            n => (2, u64::from(n)),
        };
        if len > MAX_FRAME {
            return Err(Failure::new("protocol", format!("frame of {len} bytes")));
        }
        let total = header + len as usize;
        self.conn.need(total, DURING).await?;
        let payload = self.conn.buffered()[header..total].to_vec();
        self.conn.consume(total);
        Ok((fin, opcode, payload))
    }

    /// Close 1000, wait for the server's close frame, then end TLS.
    pub async fn close(mut self) -> Result<(), Failure> {
        self.send_frame(0x8, &1000u16.to_be_bytes()).await?;
        let outcome = loop {
            match self.next().await {
                Ok(Incoming::Close(_)) => break Ok(()),
                Ok(Incoming::Text(_)) => {}
                Err(e) => break Err(e),
            }
        };
        self.conn.close().await;
        outcome
    }
}
