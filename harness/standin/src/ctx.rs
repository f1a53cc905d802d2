//! One request as the handlers see it: raw bytes from the capture, decoded the way Duplicati's
//! server decodes them.

use http_types::Method;
use serde_json::Value;

use crate::record::{CaptureStream, Captured};
use crate::target;

pub struct Ctx {
    pub method: Method,
    pub raw: Captured,
    pub raw_path: Vec<u8>,
    /// Kestrel-decoded path (2.3 routing).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub io: CaptureStream,
}

impl Ctx {
    pub fn new(method: Method, raw: Captured, body: Vec<u8>, io: CaptureStream) -> Ctx {
        let (p, q) = target::split_target(raw.target());
        let raw_path = p.to_vec();
        Ctx {
            method,
            path: target::kestrel_path(&raw_path),
            query: target::query_pairs(q),
            raw_path,
            raw,
            body,
            io,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.raw
            .headers(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        target::query_get(&self.query, key)
    }

    /// The Host header split like ASP.NET's HostString: `(host, port)`; `[::1]:8200` keeps the
    /// brackets in the host part.
    pub fn host(&self) -> (String, Option<u16>) {
        let raw = self.header("host").unwrap_or_default();
        split_host(&raw)
    }

    /// Request cookies by name. // ASP.NET RequestCookieCollection: `;`-separated `name=value`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.raw.headers("cookie").iter().find_map(|h| {
            String::from_utf8_lossy(h).split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        })
    }

    /// The body as JSON; `None` when empty or malformed (callers decide what that means).
    pub fn json(&self) -> Option<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// A form-urlencoded body, as the 2.0 server reads POSTs.
    pub fn form(&self) -> Vec<(String, String)> {
        target::query_pairs(&self.body)
    }
}

pub fn split_host(raw: &str) -> (String, Option<u16>) {
    let raw = raw.trim();
    if raw.starts_with('[') {
        if let Some(end) = raw.find(']') {
            let port = raw[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (raw[..=end].to_string(), port);
        }
    }
    match raw.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (raw.to_string(), None),
    }
}

/// ASP.NET binds JSON bodies case-insensitively: `Password`, `password` and `PASSWORD` are one key.
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

pub fn field_str<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    field(v, name).and_then(Value::as_str)
}

pub fn field_bool(v: &Value, name: &str) -> Option<bool> {
    match field(v, name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "1" | "on" | "yes"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_split_like_hoststring() {
        assert_eq!(
            split_host("backup.example.com"),
            ("backup.example.com".into(), None)
        );
        assert_eq!(
            split_host("127.0.0.1:8200"),
            ("127.0.0.1".into(), Some(8200))
        );
        assert_eq!(split_host("[::1]:8443"), ("[::1]".into(), Some(8443)));
        assert_eq!(split_host("h:notaport"), ("h".into(), None));
    }

    #[test]
    fn json_keys_are_case_insensitive() {
        let v: Value = serde_json::json!({"password": "pw", "REMEMBERME": true});
        assert_eq!(field_str(&v, "Password"), Some("pw"));
        assert_eq!(field_bool(&v, "RememberMe"), Some(true));
    }
}
