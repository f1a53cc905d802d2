//! What the integration tests share: the real gate binary on loopback, a recording upstream that
//! keeps every raw request head, and a TLS client that speaks raw bytes.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_std::net::TcpStream as AsyncTcpStream;
use futures::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// The gate prints its address right after binding; a debug build under load starts well
/// inside this.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// Any single read in a test; a healthy loopback exchange takes milliseconds.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("dgate-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate for `localhost` and 127.0.0.1, made by the gate's own generator.
pub struct TestCert {
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let dir = TempDir::new("cert");
        let (cert_pem, key_pem) =
            duplicati_gate::selfsigned::generate(&["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &cert_pem).unwrap();
        duplicati_gate::selfsigned::write_private(&key, key_pem.as_bytes()).unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        TestCert {
            dir,
            cert,
            key,
            der,
        }
    }
}

/// The real binary, started with `serve --listen 127.0.0.1:0`.
pub struct Gate {
    child: Child,
    pub addr: SocketAddr,
    pub redirect: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    /// The certificate `start` made; `None` when the test passed its own certificate flags.
    cert: Option<TestCert>,
}

impl Gate {
    pub fn start(upstream: &str, extra: &[&str]) -> Gate {
        let cert = TestCert::new();
        let mut args = vec![
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            upstream.into(),
            "--cert".into(),
            cert.cert.display().to_string(),
            "--key".into(),
            cert.key.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut gate = Gate::spawn(&args);
        gate.cert = Some(cert);
        gate
    }

    /// Starts the binary with exactly `args` (the test chooses the certificate flags).
    pub fn spawn(args: &[String]) -> Gate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_duplicati-gate"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start duplicati-gate");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut child_err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            while child_err.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let mut child_out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            while child_out.read_line(&mut line).unwrap_or(0) > 0 {
                if lines_tx.send(line.trim_end().to_string()).is_err() {
                    return;
                }
                line.clear();
            }
        });
        let first = lines_rx.recv_timeout(STARTUP_DEADLINE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the gate printed no first line within {STARTUP_DEADLINE:?}; stderr:\n{}",
                stderr.lock().unwrap()
            )
        });
        let addr = first
            .strip_prefix("listening on https://")
            .unwrap_or_else(|| panic!("first stdout line was {first:?}"))
            .parse()
            .unwrap();
        let redirect = if args.iter().any(|a| a == "--redirect-http") {
            let second = lines_rx.recv_timeout(STARTUP_DEADLINE).unwrap();
            let plain = second
                .strip_prefix("redirecting http://")
                .unwrap()
                .trim_end_matches(" to https");
            Some(plain.parse().unwrap())
        } else {
            None
        };
        Gate {
            child,
            addr,
            redirect,
            stderr,
            cert: None,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the process to exit (after a signal) and returns its exit code.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The certificate `start` made and passed with `--cert`/`--key`.
    pub fn cert(&self) -> &TestCert {
        self.cert
            .as_ref()
            .expect("this gate was spawned with the test's own certificate flags")
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr, &self.cert().der)
    }

    /// Polls stderr until it contains `needle` (the access log is written after the response).
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.stderr();
            if text.contains(needle) || start.elapsed() > READ_DEADLINE {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the gate binary to completion (for `check`, `gen-cert`, bad flags).
pub fn run_gate(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_duplicati-gate"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn client_config(trusted: &CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// A TLS client that writes raw bytes and parses what comes back.
pub struct Client {
    pub stream: TlsStream<AsyncTcpStream>,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn connect(addr: SocketAddr, trusted: &CertificateDer<'static>) -> Client {
        Client::connect_with(addr, Arc::new(client_config(trusted)))
    }

    pub fn connect_with(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
        Client::try_connect_with(addr, config).expect("TLS handshake with the gate")
    }

    pub fn try_connect_with(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Client> {
        async_std::task::block_on(async {
            let tcp = AsyncTcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(Client {
                stream,
                buf: Vec::new(),
            })
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        async_std::task::block_on(async {
            self.stream.write_all(bytes).await.unwrap();
            self.stream.flush().await.unwrap();
        })
    }

    /// Reads more bytes into the buffer; 0 means the gate closed.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let read = async_std::task::block_on(async_std::future::timeout(
            READ_DEADLINE,
            self.stream.read(&mut chunk),
        ));
        match read {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Ok(Err(_)) => 0,
            Err(_) => panic!(
                "no bytes from the gate within {READ_DEADLINE:?}; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads one response. Bodies are decoded by Content-Length, chunked, or read to the close.
    pub fn response(&mut self) -> Response {
        self.response_to(false)
    }

    pub fn response_to(&mut self, head_request: bool) -> Response {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill() > 0,
                "the gate closed before a full response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let status: u16 = head[9..12].parse().unwrap();
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return response;
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buf.len() < length {
                assert!(self.fill() > 0, "body cut short");
            }
            response.body = self.buf.drain(..length).collect();
        } else if response.header("transfer-encoding").is_some() {
            response.body = self.read_chunked().expect("complete chunked body");
        } else {
            while self.fill() > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// Decodes a chunked body; `None` if the connection closed before the final chunk.
    pub fn read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if self.fill() == 0 {
                    return None;
                }
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                if self.fill() == 0 {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Some(body);
            }
        }
    }

    /// Reads until at least `n` bytes are buffered (or the close), and takes them.
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n && self.fill() > 0 {}
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// True if the gate closed the connection (after any buffered bytes).
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request as Duplicati's side of the gate received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The raw head, request line included, byte for byte.
    pub head: Vec<u8>,
    /// The body as it arrived (chunked framing included, if any).
    pub raw_body: Vec<u8>,
    pub connection: usize,
}

impl Recorded {
    pub fn request_line(&self) -> String {
        let end = find(&self.head, b"\r\n").unwrap();
        String::from_utf8_lossy(&self.head[..end]).into_owned()
    }

    pub fn headers(&self, name: &str) -> Vec<Vec<u8>> {
        self.head
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                let (n, v) = line.split_at(colon);
                n.eq_ignore_ascii_case(name.as_bytes())
                    .then(|| v[1..].trim_ascii().to_vec())
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// The upstream side of one exchange, handed to a test's handler.
pub struct Exchange<'a> {
    pub head: Vec<u8>,
    conn: &'a mut UpstreamConn,
    raw_body: Vec<u8>,
    body_read: bool,
}

impl Exchange<'_> {
    pub fn header(&self, name: &str) -> Option<String> {
        Recorded {
            head: self.head.clone(),
            raw_body: Vec::new(),
            connection: 0,
        }
        .header(name)
    }

    /// Reads the request body as framed by the head (Content-Length or chunked).
    pub fn body(&mut self) -> Vec<u8> {
        if !self.body_read {
            self.body_read = true;
            let recorded = Recorded {
                head: self.head.clone(),
                raw_body: Vec::new(),
                connection: 0,
            };
            if let Some(length) = recorded.header("content-length") {
                self.raw_body = self.conn.read_exact(length.parse().unwrap());
            } else if recorded.header("transfer-encoding").is_some() {
                self.raw_body = self.conn.read_chunked_raw();
            }
        }
        decode_chunked(&self.raw_body).unwrap_or_else(|| self.raw_body.clone())
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.conn.stream.write_all(bytes);
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.conn.stream
    }

    /// The bytes after the head that arrived with it (for upgrade tests).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.conn.buf)
    }
}

/// What the upstream does with the connection after a handler returns.
pub enum Next {
    KeepAlive,
    Close,
}

type Handler = dyn Fn(&mut Exchange<'_>) -> Next + Send + Sync;

/// A scripted Duplicati stand-in on loopback that records every request byte for byte.
pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub connections: Arc<AtomicUsize>,
}

struct UpstreamConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl UpstreamConn {
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    fn read_head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                return Some(self.buf.drain(..i + 4).collect());
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill() == 0 {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    fn read_chunked_raw(&mut self) -> Vec<u8> {
        let mut raw = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if self.fill() == 0 {
                    return raw;
                }
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&self.buf[..line_end]).unwrap_or("0"),
                16,
            )
            .unwrap_or(0);
            raw.extend(self.buf.drain(..line_end + 2));
            raw.extend(self.read_exact(size + 2));
            if size == 0 {
                return raw;
            }
        }
    }
}

pub fn decode_chunked(raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut rest = raw;
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

impl Upstream {
    pub fn start(handler: impl Fn(&mut Exchange<'_>) -> Next + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (recorded, counter) = (requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let id = counter.fetch_add(1, Ordering::SeqCst);
                let (handler, recorded) = (handler.clone(), recorded.clone());
                std::thread::spawn(move || {
                    let mut conn = UpstreamConn {
                        stream,
                        buf: Vec::new(),
                    };
                    while let Some(head) = conn.read_head() {
                        let mut exchange = Exchange {
                            head,
                            conn: &mut conn,
                            raw_body: Vec::new(),
                            body_read: false,
                        };
                        let next = handler(&mut exchange);
                        exchange.body();
                        let entry = Recorded {
                            head: exchange.head,
                            raw_body: exchange.raw_body,
                            connection: id,
                        };
                        recorded.lock().unwrap().push(entry);
                        if let Next::Close = next {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            requests,
            connections,
        }
    }

    /// An upstream answering every request `200 OK` with body `ok`.
    pub fn ok() -> Upstream {
        Upstream::start(|ex| {
            ex.body();
            ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
            Next::KeepAlive
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests were recorded (the record is written after the response).
    pub fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let start = Instant::now();
        while self.requests.lock().unwrap().len() < n && start.elapsed() < READ_DEADLINE {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.recorded()
    }
}

/// A loopback port with nothing listening on it.
pub fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A plain TCP connection (for plain HTTP on the TLS port and the redirect port).
pub fn plain_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_DEADLINE)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}
