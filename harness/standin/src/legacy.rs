//! The legacy 2.0 profile (`--legacy-2.0`): the HttpServer on Mono, before Kestrel.
//! // @2.0 Duplicati/Server/WebServer/Server.cs (module order: HostHeaderChecker,
//! // AuthenticationHandler, RESTHandler, static files),
//! // @2.0 Duplicati/Server/WebServer/AuthenticationHandler.cs (Process, AddXSRFTokenToRespone,
//! // FindAuthCookie, HasXSRFCookie), @2.0 Duplicati/Server/WebServer/RESTHandler.cs,
//! // @2.0 Duplicati/Server/WebServer/RESTMethods/Backup.cs (GET files/<rest>, SearchFiles)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_types::{Method, Response};
use serde_json::{json, Value};

use crate::api;
use crate::app::App;
use crate::auth::random_bytes;
use crate::ctx::Ctx;
use crate::hostcheck::HostCheck;
use crate::restore::RestoreJob;
use crate::timeparse::cookie_date;
use crate::{reply, status, target};

// AuthenticationHandler.cs: AUTH_TIMEOUT_MINUTES = 10 (nonces), XSRF_TIMEOUT_MINUTES = 10,
// session tokens 1 h sliding, at most 50 pending nonces and 500 XSRF tokens.
const NONCE_TTL: Duration = Duration::from_secs(600);
const XSRF_TTL: Duration = Duration::from_secs(600);
const SESSION_TTL: Duration = Duration::from_secs(3600);
const MAX_NONCES: usize = 50;
const MAX_XSRF: usize = 500;

pub struct LegacyAuth {
    salt: [u8; 32],
    /// nonce => (expiry, expected client hash)
    nonces: Mutex<HashMap<String, (Instant, String)>>,
    sessions: Mutex<HashMap<String, Instant>>,
    xsrf: Mutex<HashMap<String, Instant>>,
}

impl Default for LegacyAuth {
    fn default() -> Self {
        LegacyAuth {
            salt: random_bytes::<32>(),
            nonces: Mutex::default(),
            sessions: Mutex::default(),
            xsrf: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// ServerSettings.SetWebserverPassword: `server-passphrase = SHA256(utf8(pw) || salt)`.
pub fn stored_hash(password: &str, salt: &[u8]) -> Vec<u8> {
    sha256(&[password.as_bytes(), salt])
}

/// What login.js sends: `base64(SHA256(nonce_bytes || stored_hash))`.
pub fn client_hash(nonce: &[u8], stored: &[u8]) -> String {
    STANDARD.encode(sha256(&[nonce, stored]))
}

fn cookie(name: &str, value: &str, ttl: Duration) -> String {
    let exp = chrono::Utc::now() + chrono::Duration::seconds(ttl.as_secs() as i64);
    // HttpServer.ResponseCookie: name=value; expires=…; path=/ (no HttpOnly, no Secure).
    format!("{name}={value}; expires={}; path=/", cookie_date(exp))
}

fn decoded(v: &str) -> String {
    target::unescape_data(v.as_bytes())
}

impl LegacyAuth {
    fn xsrf_cookie_live(&self, ctx: &Ctx) -> bool {
        let Some(v) = ctx.cookie("xsrf-token") else {
            return false;
        };
        let mut x = lock(&self.xsrf);
        x.retain(|_, exp| *exp > Instant::now());
        for key in [v.clone(), decoded(&v)] {
            if let Some(exp) = x.get_mut(&key) {
                *exp = Instant::now() + XSRF_TTL;
                return true;
            }
        }
        false
    }

    fn new_xsrf(&self) -> Option<String> {
        let mut x = lock(&self.xsrf);
        if x.len() >= MAX_XSRF {
            return None;
        }
        let t = STANDARD.encode(random_bytes::<32>());
        x.insert(t.clone(), Instant::now() + XSRF_TTL);
        Some(t)
    }

    fn xsrf_header_ok(&self, ctx: &Ctx) -> Option<String> {
        let given = ctx
            .header("x-xsrf-token")
            .or_else(|| ctx.query("x-xsrf-token").map(String::from))
            .or_else(|| {
                ctx.form()
                    .into_iter()
                    .find(|(k, _)| k == "x-xsrf-token")
                    .map(|(_, v)| v)
            })?;
        let mut x = lock(&self.xsrf);
        for key in [given.clone(), decoded(&given)] {
            if let Some(exp) = x.get_mut(&key) {
                *exp = Instant::now() + XSRF_TTL;
                return Some(key);
            }
        }
        None
    }

    fn session_ok(&self, ctx: &Ctx) -> Option<String> {
        let form = ctx.form();
        let token = form
            .iter()
            .find(|(k, _)| k == "auth-token")
            .map(|(_, v)| v.clone())
            .or_else(|| ctx.query("auth-token").map(String::from))
            .or_else(|| ctx.cookie("session-auth"))?;
        let mut s = lock(&self.sessions);
        s.retain(|_, exp| *exp > Instant::now());
        for key in [token.clone(), decoded(&token)] {
            if let Some(exp) = s.get_mut(&key) {
                *exp = Instant::now() + SESSION_TTL;
                return Some(key);
            }
        }
        None
    }

    /// POST /login.cgi: `get-nonce=1`, then `password=<client hash>` with the nonce cookie.
    fn login(&self, ctx: &Ctx, password: &str) -> Response {
        let form = if ctx.method == Method::Post {
            ctx.form()
        } else {
            ctx.query.clone()
        };
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.trim().is_empty())
        };
        lock(&self.nonces).retain(|_, (exp, _)| *exp > Instant::now());
        if get("get-nonce").is_some() {
            let mut nonces = lock(&self.nonces);
            if nonces.len() > MAX_NONCES {
                return reply::text(503, "Too many active login attempts");
            }
            let raw = random_bytes::<32>();
            let nonce = STANDARD.encode(raw);
            let expected = client_hash(&raw, &stored_hash(password, &self.salt));
            nonces.insert(nonce.clone(), (Instant::now() + NONCE_TTL, expected));
            let mut r = reply::json(
                200,
                &json!({"Status": "OK", "Nonce": nonce, "Salt": STANDARD.encode(self.salt)}),
            );
            r.append_header("set-cookie", cookie("session-nonce", &nonce, NONCE_TTL));
            return r;
        }
        let unauthorized = || {
            let mut r = reply::empty(401);
            r.insert_header("content-type", "application/json");
            r
        };
        let Some(given) = get("password") else {
            return unauthorized();
        };
        let nonce = ctx.cookie("session-nonce").unwrap_or_default();
        let mut nonces = lock(&self.nonces);
        let key = if nonces.contains_key(&decoded(&nonce)) {
            decoded(&nonce)
        } else {
            nonce
        };
        // The nonce is single-use: removed whether or not the password matches.
        let Some((_, expected)) = nonces.remove(&key) else {
            return unauthorized();
        };
        if expected != given {
            return unauthorized();
        }
        let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        lock(&self.sessions).insert(token.clone(), Instant::now() + SESSION_TTL);
        let mut r = reply::json(200, &json!({"Status": "OK"}));
        r.append_header("set-cookie", cookie("session-auth", &token, SESSION_TTL));
        r
    }
}

const LOGIN_HTML: &str = "<!doctype html><html><head><title>Duplicati login</title></head><body><form method=\"post\" action=\"login.cgi\"><input type=\"password\" name=\"password\"></form></body></html>\n";

pub async fn route(app: &Arc<App>, ctx: Ctx) -> Response {
    // Server.cs HostHeaderChecker: first module, every path.
    let (host, _) = ctx.host();
    if !app.hosts.allows(&host) {
        return HostCheck::refuse_legacy();
    }
    let la = &app.legacy;
    let mut set_cookies = Vec::new();
    if !la.xsrf_cookie_live(&ctx) {
        match la.new_xsrf() {
            Some(t) => set_cookies.push(cookie("xsrf-token", &t, XSRF_TTL)),
            None => return reply::text(503, "Too Many Concurrent Request, try again later"),
        }
    }
    let lower = ctx.path.to_ascii_lowercase();
    let mut res = handle(app, &ctx, &lower, &mut set_cookies).await;
    for c in set_cookies {
        res.append_header("set-cookie", c);
    }
    res
}

async fn handle(app: &Arc<App>, ctx: &Ctx, lower: &str, cookies: &mut Vec<String>) -> Response {
    let la = &app.legacy;
    if lower == "/logout.cgi" {
        if let Some(t) = la.session_ok(ctx) {
            lock(&la.sessions).remove(&t);
        }
        return reply::empty(204);
    }
    if lower == "/login.cgi" {
        return match &app.password {
            Some(pw) => la.login(ctx, pw),
            None => reply::json(200, &json!({"Status": "OK"})),
        };
    }
    let api = lower.starts_with("/api/v1");
    if api {
        match la.xsrf_header_ok(ctx) {
            Some(t) => cookies.push(cookie("xsrf-token", &t, XSRF_TTL)),
            None => return reply::text(400, "Missing XSRF Token. Please reload the page"),
        }
    }
    if app.password.is_some() {
        match la.session_ok(ctx) {
            Some(t) => cookies.push(cookie("session-auth", &t, SESSION_TTL)),
            None if lower == "/" || lower == "/index.html" => {
                let mut r = reply::empty(302);
                r.insert_header("location", "/login.html");
                return r;
            }
            None if api => {
                let mut r = reply::text(401, "Not logged in");
                r.insert_header("location", "login.html");
                return r;
            }
            None => {}
        }
    }
    if api {
        return rest(app, ctx).await;
    }
    match lower {
        "/" | "/index.html" => reply::html("<!doctype html><html><head><title>Duplicati</title></head><body>ngax placeholder</body></html>\n".into()),
        "/login.html" => reply::html(LOGIN_HTML.into()),
        _ => reply::empty(404),
    }
}

/// RESTHandler: module = first raw segment after /api/v1, key = the rest with `/` trimmed.
async fn rest(app: &Arc<App>, ctx: &Ctx) -> Response {
    let raw = String::from_utf8_lossy(&ctx.raw_path).into_owned();
    let after = raw
        .get("/api/v1".len()..)
        .unwrap_or("")
        .trim_start_matches('/');
    let (module, key) = after.split_once('/').unwrap_or((after, ""));
    let key = key.trim_matches('/');
    let method = &ctx.method;
    match (module.to_ascii_lowercase().as_str(), method) {
        ("systeminfo", _) => reply::json(200, &status::system_info(app)),
        ("serverstate", _) => match status::server_state(app, ctx).await {
            Ok(v) => reply::json(200, &v),
            Err(m) => reply::error(400, m),
        },
        ("backups", &Method::Get) => {
            let list: Vec<Value> = app
                .store
                .list()
                .iter()
                .map(|b| json!({"Backup": b.to_json(), "Schedule": null}))
                .collect();
            reply::json(200, &Value::Array(list))
        }
        ("backups", &Method::Post) => {
            // 2.0 posts the JSON in a form field `data`; accept a plain JSON body as well.
            let body = ctx.json().or_else(|| {
                ctx.form()
                    .into_iter()
                    .find(|(k, _)| k == "data")
                    .and_then(|(_, v)| serde_json::from_str(&v).ok())
            });
            api::backups_create(app, body, ctx.query("temporary"))
        }
        ("backup", _) => backup(app, ctx, key),
        ("task", &Method::Get) => {
            match key.parse::<i64>().ok().and_then(|id| app.tasks.state(id)) {
                Some(v) => reply::json(200, &v),
                None => reply::error(404, "No such task found"),
            }
        }
        _ => reply::error(404, "No such entry"),
    }
}

/// Backup.cs: `key.Split('/', 2)` ⇒ id + operation; `files/<rest>` takes `<rest>` from the raw
/// path (so `%2F`, `%5C` and literal `/` all work), unless the query carries `filter`; the answer
/// echoes every decoded query parameter.
fn backup(app: &App, ctx: &Ctx, key: &str) -> Response {
    let (id, op) = key.split_once('/').unwrap_or((key, ""));
    let id = target::unescape_data(id.as_bytes());
    let Some(b) = app.store.get(&id) else {
        return reply::error(404, "Invalid or missing backup id");
    };
    let (op_name, rest) = op.split_once('/').unwrap_or((op, ""));
    match (op_name.to_ascii_lowercase().as_str(), &ctx.method) {
        ("", &Method::Get) => api::backup_get(&b),
        ("filesets", &Method::Get) => api::filesets(&b),
        ("files", &Method::Get) => {
            let rest = (!rest.is_empty()).then(|| target::unescape_data(rest.as_bytes()));
            match api::files_value(ctx, &b, rest) {
                Ok(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        for (k, val) in &ctx.query {
                            o.entry(k.clone()).or_insert_with(|| json!(val));
                        }
                    }
                    reply::json(200, &v)
                }
                Err(r) => *r,
            }
        }
        ("run", &Method::Post) | ("start", &Method::Post) => api::run(app, b),
        ("restore", &Method::Post) => {
            let job = match ctx.json() {
                Some(j) => RestoreJob::from_json(&j),
                None => RestoreJob::from_form(&ctx.form()),
            };
            api::restore(app, b, job)
        }
        _ => reply::error(404, "No such operation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_cgi_test_vector() {
        // duplicati-wire.md §1.1: pw easy1234, salt 32×0x01, nonce 32×0x02.
        let stored = stored_hash("easy1234", &[1u8; 32]);
        let hash = client_hash(&[2u8; 32], &stored);
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("password", &hash)
            .finish();
        assert_eq!(
            form,
            "password=ct3VRULFay88a2Vz8GLAptdtFhd7EJAPuZS%2FMYX9%2Bto%3D"
        );
    }
}
