//! Duplicati 2.0's API as its ngax UI called it (duplicati-wire.md §1.1, §2.1): `login.cgi`
//! with a nonce and salt, the `session-auth` cookie, the XSRF cookie echoed in `X-XSRF-Token`,
//! and the restore browser's `/files/<encoded folder>` paths.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::client::{Conn, Endpoint, Request, Response};
use crate::error::{Error, Result};
use crate::percent;

pub struct LegacyApi {
    pub endpoint: Endpoint,
    conn: Option<Conn>,
    cookies: BTreeMap<String, String>,
}

impl LegacyApi {
    pub fn new(endpoint: Endpoint) -> LegacyApi {
        LegacyApi {
            endpoint,
            conn: None,
            cookies: BTreeMap::new(),
        }
    }

    /// Sends with the cookie jar and the XSRF header, as AngularJS does, and keeps what the
    /// answer sets.
    pub fn send(&mut self, mut req: Request) -> Result<Response> {
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("Cookie", &jar.join("; "));
        }
        if let Some(xsrf) = self.cookies.get("xsrf-token") {
            // AngularJS reads the cookie with decodeURIComponent before echoing it.
            let decoded = percent_decode(xsrf);
            req = req.header("X-XSRF-Token", &decoded);
        }
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(&self.endpoint)?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::msg("not connected"))?;
        let response = match conn.send(&req) {
            Ok(r) => r,
            Err(_) => {
                let mut fresh = Conn::connect(&self.endpoint)?;
                let r = fresh.send(&req)?;
                self.conn = Some(fresh);
                r
            }
        };
        for cookie in response.headers_named("set-cookie") {
            if let Some((name, value)) = cookie
                .split(';')
                .next()
                .and_then(|p| p.trim().split_once('='))
            {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }

    pub fn expect_json(&mut self, req: Request) -> Result<Value> {
        let shown = req.to_string();
        let r = self.send(req)?;
        crate::ensure!(
            r.status == 200,
            "expected 200, got:\n{r}\nrequest was:\n{shown}"
        );
        r.json()
    }

    /// The 2.0 login: `get-nonce=1`, then `password=base64(SHA256(nonce || SHA256(pw || salt)))`.
    pub fn login(&mut self, password: &str) -> Result<()> {
        let nonce = self.expect_json(Request::new("POST", "/login.cgi").form("get-nonce=1"))?;
        let field = |name: &str| -> Result<Vec<u8>> {
            let text = nonce
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::msg(format!("login.cgi answer has no {name}: {nonce}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| Error::msg(format!("{name} is not base64: {e}")))
        };
        let (nonce_bytes, salt) = (field("Nonce")?, field("Salt")?);
        let stored = sha256(&[password.as_bytes(), &salt]);
        let hash =
            base64::engine::general_purpose::STANDARD.encode(sha256(&[&nonce_bytes, &stored]));
        let body = format!("password={}", percent::encode(&hash, true));
        self.expect_json(Request::new("POST", "/login.cgi").form(&body))?;
        crate::ensure!(
            self.cookies.contains_key("session-auth"),
            "login.cgi accepted the password but set no session-auth cookie"
        );
        Ok(())
    }

    /// The ngax restore browser's request: folder in the path (encoded once, `/` as `%2F`) and,
    /// as the UI sends it, in `filter` too. Without `filter`, the path alone selects the folder.
    pub fn list_folder_target(id: &str, time: &str, folder: &str, with_filter: bool) -> String {
        let mut target = format!(
            "/api/v1/backup/{id}/files/{}?prefix-only=false&folder-contents=true&time={}",
            percent::encode(folder, false),
            percent::encode(time, false)
        );
        if with_filter {
            target.push_str(&format!(
                "&filter={}",
                percent::encode(&format!("@{folder}"), false)
            ));
        }
        target
    }
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
