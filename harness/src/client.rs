//! A small, blocking HTTP/1.1 client over rustls or plain TCP.
//!
//! Blocking on purpose: it runs on the thread that joined the client namespace, and every socket
//! it opens must be created on that thread. The request-target is sent exactly as given, so the
//! tests decide every byte of `%2F`, `%2B`, `%40`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::error::{Context, Error, Result};

/// How long one read may block. Backups, restores and listings in the stand-in finish in well
/// under a second; real Duplicati answers listings synchronously, so allow it generous time.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response head accepted; Duplicati's heads are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// Where requests go and what they claim to be talking to.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The `Host` header, sent verbatim (e.g. `gate.test:8443`).
    pub host: String,
    pub tls: Option<Tls>,
}

#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl Endpoint {
    pub fn https(
        addr: SocketAddr,
        host: &str,
        sni: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Endpoint> {
        let server_name = ServerName::try_from(sni.to_owned())
            .with_context(|| format!("{sni:?} is not a valid TLS server name"))?;
        Ok(Endpoint {
            addr,
            host: host.to_owned(),
            tls: Some(Tls {
                config,
                server_name,
            }),
        })
    }

    pub fn http(addr: SocketAddr, host: &str) -> Endpoint {
        Endpoint {
            addr,
            host: host.to_owned(),
            tls: None,
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One connection; requests on it are sequential (keep-alive).
pub struct Conn {
    stream: Box<dyn Stream>,
    /// Bytes read past the end of the last response (the start of a WebSocket frame).
    pending: Vec<u8>,
    pub endpoint: Endpoint,
}

#[derive(Clone)]
pub struct Request {
    pub method: String,
    /// Sent byte-exact.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: Option<&str>) -> Request {
        match token {
            Some(t) => self.header("Authorization", &format!("Bearer {t}")),
            None => self,
        }
    }

    pub fn json(mut self, value: &serde_json::Value) -> Request {
        self.body = value.to_string().into_bytes();
        self.header("Content-Type", "application/json; charset=utf-8")
    }

    pub fn form(mut self, body: &str) -> Request {
        self.body = body.as_bytes().to_vec();
        self.header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
    }
}

/// Secrets stay out of test output: header values that carry credentials are shortened.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {} HTTP/1.1", self.method, self.target)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", redact_header(name, value))?;
        }
        if !self.body.is_empty() {
            writeln!(f, "({} body bytes)", self.body.len())?;
        }
        Ok(())
    }
}

fn redact_header(name: &str, value: &str) -> String {
    let secret =
        ["authorization", "cookie", "set-cookie"].contains(&name.to_ascii_lowercase().as_str());
    if secret && value.len() > 16 {
        format!(
            "{}…(redacted)",
            &value[..value.char_indices().nth(12).map_or(value.len(), |(i, _)| i)]
        )
    } else {
        value.to_owned()
    }
}

pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON:\n{self}"))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP/1.1 {} {}", self.status, self.reason)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", redact_header(name, value))?;
        }
        let body = self.text();
        const SHOWN: usize = 2000;
        if body.len() > SHOWN {
            let cut = body
                .char_indices()
                .nth(SHOWN)
                .map_or(body.len(), |(i, _)| i);
            write!(f, "\n{}… ({} bytes)", &body[..cut], self.body.len())
        } else {
            write!(f, "\n{body}")
        }
    }
}

impl Conn {
    pub fn connect(endpoint: &Endpoint) -> Result<Conn> {
        let tcp = TcpStream::connect_timeout(&endpoint.addr, Duration::from_secs(10))
            .with_context(|| format!("cannot connect to {}", endpoint.addr))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .context("set_read_timeout")?;
        tcp.set_nodelay(true).context("set_nodelay")?;
        let stream: Box<dyn Stream> = match &endpoint.tls {
            Some(tls) => {
                let conn =
                    rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                        .context("cannot start a TLS client")?;
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                // Complete the handshake now, so a certificate problem is reported as such.
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .with_context(|| format!("TLS handshake with {} failed", endpoint.addr))?;
                }
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        Ok(Conn {
            stream,
            pending: Vec::new(),
            endpoint: endpoint.clone(),
        })
    }

    /// Sends `req` and reads the whole response. A failure names the request.
    pub fn send(&mut self, req: &Request) -> Result<Response> {
        self.write_request(req)
            .and_then(|()| self.read_response(&req.method))
            .map_err(|e| Error::msg(format!("{e}\nrequest was:\n{req}")))
    }

    fn write_request(&mut self, req: &Request) -> Result<()> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            req.method, req.target, self.endpoint.host
        );
        for (name, value) in &req.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let framed = req.method != "GET" || !req.body.is_empty();
        if framed
            && !req
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&req.body);
        self.stream
            .write_all(&bytes)
            .and_then(|()| self.stream.flush())
            .with_context(|| format!("cannot send to {}", self.endpoint.addr))
    }

    fn fill(&mut self) -> Result<usize> {
        let mut buf = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut buf) {
            Ok(n) => n,
            // rustls reports a peer that closes without close_notify this way; treat it as EOF
            // and let framing decide whether that was allowed.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e).context("read failed"),
        };
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn read_head(&mut self) -> Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed
                .parse(&self.pending)
                .context("malformed response head")?
            {
                httparse::Status::Complete(len) => {
                    let response = Response {
                        status: parsed.code.unwrap_or(0),
                        reason: parsed.reason.unwrap_or("").to_owned(),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    self.pending.drain(..len);
                    return Ok(response);
                }
                httparse::Status::Partial => {
                    if self.pending.len() > MAX_HEAD {
                        crate::bail!("response head longer than {MAX_HEAD} bytes");
                    }
                    if self.fill()? == 0 {
                        crate::bail!(
                            "connection closed before a complete response head; got {:?}",
                            String::from_utf8_lossy(&self.pending)
                        );
                    }
                }
            }
        }
    }

    fn read_response(&mut self, method: &str) -> Result<Response> {
        let mut response = self.read_head()?;
        // 1xx other than 101 are interim; skip them (RFC 9110 §15.2).
        while (100..200).contains(&response.status) && response.status != 101 {
            response = self.read_head()?;
        }
        if method == "HEAD"
            || response.status == 101
            || response.status == 204
            || response.status == 304
        {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            response.body = self.read_chunked()?;
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length
                .trim()
                .parse()
                .with_context(|| format!("bad Content-Length {length:?}"))?;
            while self.pending.len() < length {
                if self.fill()? == 0 {
                    crate::bail!(
                        "connection closed after {} of {length} body bytes",
                        self.pending.len()
                    );
                }
            }
            response.body = self.pending.drain(..length).collect();
        } else {
            while self.fill()? != 0 {}
            response.body = std::mem::take(&mut self.pending);
        }
        Ok(response)
    }

    fn read_line(&mut self) -> Result<String> {
        loop {
            if let Some(pos) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.fill()? == 0 {
                crate::bail!("connection closed inside a chunked body");
            }
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.pending.len() < size + 2 {
                if self.fill()? == 0 {
                    crate::bail!("connection closed inside a chunk");
                }
            }
            body.extend(self.pending.drain(..size));
            self.pending.drain(..2);
        }
    }

    /// Reads exactly `n` bytes, using what is already buffered first.
    pub fn read_exact_buffered(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.pending.len() < n {
            if self.fill()? == 0 {
                crate::bail!(
                    "connection closed; wanted {n} bytes, had {}",
                    self.pending.len()
                );
            }
        }
        Ok(self.pending.drain(..n).collect())
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .context("write failed")
    }
}

/// One request on a fresh connection.
pub fn send(endpoint: &Endpoint, req: &Request) -> Result<Response> {
    Conn::connect(endpoint)
        .map_err(|e| Error::msg(format!("{e}\nrequest was:\n{req}")))?
        .send(req)
}
