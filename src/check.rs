//! `duplicati-gate check`: everything `serve` would rely on, checked and reported, nothing changed.
//! Errors make the exit code 2; warnings are printed and leave it 0.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use async_std::net::TcpStream;
use futures::{AsyncReadExt, AsyncWriteExt};

use crate::config::{CertChoice, Config, UpstreamUrl};
use crate::tls::{self, CertSource};

/// Certificates expiring sooner than this get a warning: time to renew.
const EXPIRY_WARNING_DAYS: i64 = 14;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub errors: usize,
}

impl Report {
    fn ok(&mut self, line: String) {
        self.lines.push(format!("ok       {line}"));
    }
    fn warn(&mut self, line: String) {
        self.lines.push(format!("warning  {line}"));
    }
    fn error(&mut self, line: String) {
        self.errors += 1;
        self.lines.push(format!("error    {line}"));
    }
}

pub fn run(config: &Config) -> Report {
    let mut report = Report::default();
    match &config.cert {
        CertChoice::Given(source) => check_certificate(source, &mut report),
        CertChoice::SelfSigned { dir, names } => {
            let source = CertSource::Pem {
                cert: dir.join("self-signed-cert.pem"),
                key: dir.join("self-signed-key.pem"),
            };
            if dir.join("self-signed-cert.pem").exists() {
                check_certificate(&source, &mut report);
            } else {
                report.ok(format!(
                    "no certificate given: serve will make a self-signed one for {} in {}",
                    names.join(", "),
                    dir.display()
                ));
            }
        }
    }
    async_std::task::block_on(check_upstream(&config.upstream, &mut report));
    report
}

fn check_certificate(source: &CertSource, report: &mut Report) {
    let key_path = source.key_path();
    let certificate = match tls::load(source) {
        Ok(certificate) => certificate,
        Err(e) => return report.error(e.to_string()),
    };
    report.ok("certificate and private key readable and matching".into());
    if let Some(warning) = key_permission_warning(key_path) {
        report.warn(warning);
    }
    match x509_parser::parse_x509_certificate(&certificate.chain[0]) {
        Ok((_, leaf)) => {
            let not_after = leaf.validity().not_after;
            let left = not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
            let date = not_after.to_datetime().date();
            if left <= 0 {
                report.error(format!("certificate expired on {date}: renew it"));
            } else if left < EXPIRY_WARNING_DAYS * 86_400 {
                report.warn(format!(
                    "certificate expires on {date}, in {} days: renew it soon",
                    left / 86_400
                ));
            } else {
                report.ok(format!("certificate valid until {date}"));
            }
        }
        Err(e) => report.error(format!("certificate cannot be parsed: {e}")),
    }
    report.ok(format!(
        "certificate SHA-256 fingerprint {}",
        tls::fingerprint(&certificate.chain[0])
    ));
}

/// A private key others can read is a key others may have copied.
pub fn key_permission_warning(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "private key {} is readable by group or others (mode {:o}); run: chmod 400 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

async fn check_upstream(url: &UpstreamUrl, report: &mut Report) {
    match async_std::future::timeout(UPSTREAM_TIMEOUT, get_health(url)).await {
        Ok(Ok((200, body))) if body.trim() == "Healthy" => {
            report.ok(format!("Duplicati answers at {} (GET /health: 200 Healthy)", url.origin));
        }
        Ok(Ok((status, _))) => report.warn(format!(
            "something answers at {} but not like Duplicati (GET /health: {status}); is --upstream right?",
            url.origin
        )),
        Ok(Err(e)) => report.error(format!("Duplicati is not answering at {}: {e} (is it running? is --upstream right?)", url.origin)),
        Err(_) => report.error(format!("Duplicati at {} did not answer GET /health within {} s", url.origin, UPSTREAM_TIMEOUT.as_secs())),
    }
}

async fn get_health(url: &UpstreamUrl) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
    let authority = url.origin.trim_start_matches("http://");
    let request = format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response).await?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(&response) {
        Ok(httparse::Status::Complete(len)) => Ok((
            parsed.code.unwrap_or_default(),
            String::from_utf8_lossy(&response[len..]).into_owned(),
        )),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an HTTP response",
        )),
    }
}
