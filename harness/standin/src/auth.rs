//! 2.1+ authentication: `/api/v1/auth/*`, Bearer and PreAuth.
//! // Duplicati/WebserverCore/Endpoints/V1/Auth.cs, Services/LoginProvider.cs,
//! // Middlewares/JWTProvider.cs, Services/PreAuthTokenHandler.cs

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Instant;

use aws_lc_rs::{constant_time, pbkdf2, rand};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http_types::Response;
use serde_json::{json, Map, Value};

use crate::ctx::{field_bool, field_str, Ctx};
use crate::jwt::{claim_str, JwtKey, TokenType};
use crate::reply;
use crate::timeparse::cookie_date;

// JWTProvider.cs (JWTConfig): lifetimes.
const ACCESS_SECS: i64 = 15 * 60;
const SHORT_REFRESH_SECS: i64 = 2 * 3600;
const SIGNIN_SECS: i64 = 5 * 60;
const SINGLE_OP_SECS: i64 = 60;
// JWTConfig: MaxRefreshTokenDrift = 1 step, tolerated for MaxRefreshTokenDriftSeconds = 30.
const MAX_DRIFT: i64 = 1;
const MAX_DRIFT_SECS: u64 = 30;
const NONCE_ITERATIONS: u32 = 10_000;
const USER_ID: &str = "webserver";

struct Family {
    counter: i64,
    last_updated: Instant,
}

pub struct Auth {
    key: JwtKey,
    password: String,
    pre_auth: Vec<String>,
    refresh_secs: i64,
    disable_signin: bool,
    families: Mutex<HashMap<String, Family>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User,
    PreAuth,
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // aws-lc's RNG does not fail on Linux; a zeroed buffer would only weaken a test fixture.
    let _ = rand::fill(&mut b);
    b
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Auth {
    pub fn new(
        secret: &[u8],
        password: String,
        pre_auth: Vec<String>,
        refresh_secs: i64,
        disable_signin: bool,
    ) -> Auth {
        Auth {
            key: JwtKey::new(secret),
            password,
            pre_auth,
            refresh_secs,
            disable_signin,
            families: Mutex::new(HashMap::new()),
        }
    }

    fn families(&self) -> std::sync::MutexGuard<'_, HashMap<String, Family>> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn password_ok(&self, given: &str) -> bool {
        constant_time::verify_slices_are_equal(given.as_bytes(), self.password.as_bytes()).is_ok()
    }

    /// Access token valid *and* its family still alive (JWTProvider.ValidateAccessTokenAsync).
    pub fn access_ok(&self, token: &str) -> bool {
        let Ok(claims) = self.key.verify(token, TokenType::Access, now_secs()) else {
            return false;
        };
        claim_str(&claims, "fam").is_some_and(|f| self.families().contains_key(f))
    }

    fn pre_auth_ok(&self, token: &str) -> bool {
        self.pre_auth
            .iter()
            .any(|t| constant_time::verify_slices_are_equal(t.as_bytes(), token.as_bytes()).is_ok())
    }

    /// Single-operation token for `op` (the WebSocket accepts `websocket` ones).
    fn single_op_ok(&self, token: &str, op: &str) -> bool {
        self.key
            .verify(token, TokenType::SingleOperation, now_secs())
            .is_ok_and(|c| claim_str(&c, "sop") == Some(op))
    }

    /// Token sent in the WebSocket's first frame: access JWT, websocket single-op JWT or PreAuth.
    /// // Duplicati/WebserverCore/Notifications/WebsocketAuthenticator.cs
    pub fn websocket_token_ok(&self, token: &str) -> bool {
        self.access_ok(token) || self.single_op_ok(token, "websocket") || self.pre_auth_ok(token)
    }

    /// `Authorization: Bearer <JWT>` or `PreAuth <token>`; with `query_token` (path
    /// `/notifications`) also `?token=` (JwtBearerEvents.OnMessageReceived).
    pub fn authenticate(&self, ctx: &Ctx, query_token: bool) -> Option<Principal> {
        if let Some(h) = ctx.header("authorization") {
            let (scheme, value) = h.split_once(' ').unwrap_or((h.as_str(), ""));
            if scheme.eq_ignore_ascii_case("bearer") && self.access_ok(value.trim()) {
                return Some(Principal::User);
            }
            if scheme.eq_ignore_ascii_case("preauth") && self.pre_auth_ok(value.trim()) {
                return Some(Principal::PreAuth);
            }
        }
        if query_token {
            if let Some(t) = ctx.query("token") {
                if self.access_ok(t) {
                    return Some(Principal::User);
                }
                if self.pre_auth_ok(t) {
                    return Some(Principal::PreAuth);
                }
            }
        }
        None
    }

    fn access_token(&self, family: &str) -> String {
        let mut c = Map::new();
        c.insert("sid".into(), json!(USER_ID));
        c.insert("fam".into(), json!(family));
        self.key.sign(TokenType::Access, c, now_secs(), ACCESS_SECS)
    }

    /// JWTProvider.CreateRefreshToken: the nonce (RequireRefreshNonce) is PBKDF2-hashed into `nce`.
    fn refresh_token(&self, family: &str, counter: i64, short_lived: bool) -> (String, String) {
        let nonce = STANDARD.encode(random_bytes::<32>());
        let salt = random_bytes::<16>();
        let mut hash = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations(),
            &salt,
            nonce.as_bytes(),
            &mut hash,
        );
        let mut c = Map::new();
        c.insert("sid".into(), json!(USER_ID));
        c.insert("fam".into(), json!(family));
        c.insert("cnt".into(), json!(counter.to_string()));
        c.insert(
            "nce".into(),
            json!(format!(
                "{}:{}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            )),
        );
        let life = if short_lived {
            SHORT_REFRESH_SECS
        } else {
            self.refresh_secs
        };
        (
            self.key.sign(TokenType::Refresh, c, now_secs(), life),
            nonce,
        )
    }

    fn nonce_ok(nce: &str, nonce: &str) -> bool {
        let Some((salt, hash)) = nce.split_once(':') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations(),
            &salt,
            nonce.as_bytes(),
            &hash,
        )
        .is_ok()
    }

    fn new_family(&self) -> String {
        let id = STANDARD.encode(random_bytes::<16>());
        self.families().insert(
            id.clone(),
            Family {
                counter: 1,
                last_updated: Instant::now(),
            },
        );
        id
    }

    /// Tokens for a fresh family: `{"AccessToken","RefreshNonce"}` plus the refresh cookie.
    fn issue(&self, ctx: &Ctx, short_lived: bool) -> Response {
        let fam = self.new_family();
        let access = self.access_token(&fam);
        let (refresh, nonce) = self.refresh_token(&fam, 1, short_lived);
        self.tokens_reply(ctx, access, refresh, nonce)
    }

    fn tokens_reply(&self, ctx: &Ctx, access: String, refresh: String, nonce: String) -> Response {
        let mut r = reply::json(
            200,
            &json!({ "AccessToken": access, "RefreshNonce": nonce }),
        );
        // Auth.cs (login/refresh): the cookie always lives RefreshTokenDurationInMinutes.
        let expires = chrono::Utc::now() + chrono::Duration::seconds(self.refresh_secs);
        r.append_header(
            "set-cookie",
            refresh_cookie(ctx, &refresh, &cookie_date(expires)),
        );
        r
    }

    /// POST /api/v1/auth/login `{"Password","RememberMe"}`.
    pub fn login(&self, ctx: &Ctx) -> Response {
        let Some(body) = ctx.json() else {
            return reply::empty(400);
        };
        match field_str(&body, "Password") {
            Some(pw) if self.password_ok(pw) => {
                self.issue(ctx, !field_bool(&body, "RememberMe").unwrap_or(false))
            }
            _ => reply::error(401, "Failed to log in"),
        }
    }

    /// POST /api/v1/auth/refresh: rotate token and nonce; reuse of an old token kills the family.
    pub fn refresh(&self, ctx: &Ctx) -> Response {
        let Some(cookie) = ctx.cookie(&cookie_name(ctx)) else {
            return reply::error(401, "Authorization failed due to missing cookie.");
        };
        let nonce = ctx
            .json()
            .and_then(|b| field_str(&b, "Nonce").map(String::from))
            .unwrap_or_default();
        match self.rotate(&cookie, &nonce) {
            Some((access, refresh, nonce)) => self.tokens_reply(ctx, access, refresh, nonce),
            // Auth.cs: any refresh error is reported as "Failed to refresh token".
            None => reply::error(401, "Failed to refresh token"),
        }
    }

    fn read_refresh(&self, token: &str, nonce: &str) -> Option<(String, i64, bool)> {
        let claims = self
            .key
            .verify(token, TokenType::Refresh, now_secs())
            .ok()?;
        if let Some(nce) = claim_str(&claims, "nce") {
            if !Self::nonce_ok(nce, nonce) {
                return None;
            }
        }
        let fam = claim_str(&claims, "fam")?.to_string();
        let cnt = claim_str(&claims, "cnt")?.parse().ok()?;
        let life = claims.get("exp")?.as_i64()? - claims.get("nbf")?.as_i64()?;
        Some((fam, cnt, life <= SHORT_REFRESH_SECS + 60))
    }

    // LoginProvider.PerformLoginWithRefreshTokenAsync.
    fn rotate(&self, token: &str, nonce: &str) -> Option<(String, String, String)> {
        let (fam, cnt, short_lived) = self.read_refresh(token, nonce)?;
        let counter = {
            let mut fams = self.families();
            let f = fams.get_mut(&fam)?;
            let diff = f.counter - cnt;
            let drift = if f.last_updated.elapsed().as_secs() > MAX_DRIFT_SECS {
                0
            } else {
                MAX_DRIFT
            };
            if diff < 0 || diff > drift {
                // "Token family re-use detected": the whole family is invalidated.
                fams.remove(&fam);
                return None;
            }
            f.counter += 1;
            f.last_updated = Instant::now();
            f.counter
        };
        let (refresh, nonce) = self.refresh_token(&fam, counter, short_lived);
        Some((self.access_token(&fam), refresh, nonce))
    }

    /// POST /api/v1/auth/refresh/logout: forget the family, delete the cookie, `{"success":true}`.
    pub fn logout(&self, ctx: &Ctx) -> Response {
        let name = cookie_name(ctx);
        if let Some(cookie) = ctx.cookie(&name) {
            let nonce = ctx
                .json()
                .and_then(|b| field_str(&b, "Nonce").map(String::from))
                .unwrap_or_default();
            if let Some((fam, _, _)) = self.read_refresh(&cookie, &nonce) {
                self.families().remove(&fam);
            }
        }
        let mut r = reply::json(200, &json!({ "success": true }));
        // Cookies.Delete with the same Path and Domain as AddCookie.
        let (host, _) = ctx.host();
        r.append_header(
            "set-cookie",
            format!("{name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; domain={host}; path=/api/v1/auth/refresh"),
        );
        r
    }

    /// POST /api/v1/auth/status (2.3): always 200, lowercase keys.
    pub fn status(&self, ctx: &Ctx) -> Response {
        if self.authenticate(ctx, false).is_none() {
            return reply::json(
                200,
                &json!({ "authorized": false, "message": "Not authorized" }),
            );
        }
        reply::json(
            200,
            &json!({ "authorized": true, "message": "Authorized", "socketToken": self.single_op("websocket") }),
        )
    }

    fn single_op(&self, op: &str) -> String {
        let mut c = Map::new();
        c.insert("sid".into(), json!("web-api"));
        c.insert("sop".into(), json!(op));
        self.key
            .sign(TokenType::SingleOperation, c, now_secs(), SINGLE_OP_SECS)
    }

    /// POST /api/v1/auth/issuetoken/{op} (Bearer): export, bugreport, websocket.
    pub fn issue_token(&self, op: &str) -> Response {
        match op {
            "export" | "bugreport" | "websocket" => {
                reply::json(200, &json!({ "Token": self.single_op(op) }))
            }
            _ => reply::error(400, "Invalid operation"),
        }
    }

    pub fn signin_token(&self) -> String {
        let mut c = Map::new();
        c.insert("sid".into(), json!("web-api"));
        self.key.sign(TokenType::Signin, c, now_secs(), SIGNIN_SECS)
    }

    /// POST /api/v1/auth/issuesignintoken `{"Password"}`.
    pub fn issue_signin(&self, ctx: &Ctx) -> Response {
        if self.disable_signin {
            return reply::error(401, "Signin tokens are disabled");
        }
        match ctx.json().as_ref().and_then(|b| field_str(b, "Password")) {
            Some(pw) if self.password_ok(pw) => {
                reply::json(200, &json!({ "Token": self.signin_token() }))
            }
            _ => reply::error(401, "Incorrect password"),
        }
    }

    /// POST /api/v1/auth/signin `{"SigninToken","RememberMe"}`.
    pub fn signin(&self, ctx: &Ctx) -> Response {
        if self.disable_signin {
            return reply::error(401, "Signin tokens are disabled");
        }
        let body = ctx.json().unwrap_or(Value::Null);
        let token = field_str(&body, "SigninToken").unwrap_or("");
        match self.key.verify(token, TokenType::Signin, now_secs()) {
            Ok(_) => self.issue(ctx, !field_bool(&body, "RememberMe").unwrap_or(false)),
            Err(crate::jwt::JwtError::Expired) => reply::error(401, "Signin token expired"),
            Err(_) => reply::error(401, "Failed to sign in"),
        }
    }
}

fn iterations() -> NonZeroU32 {
    NonZeroU32::new(NONCE_ITERATIONS).unwrap_or(NonZeroU32::MIN)
}

/// Auth.GetCookieName: `RefreshToken_<Request.Host.Port ?? 0>`.
pub fn cookie_name(ctx: &Ctx) -> String {
    format!("RefreshToken_{}", ctx.host().1.unwrap_or(0))
}

/// Auth.AddCookie, in the attribute order of ASP.NET's SetCookieHeaderValue. No `secure`: the
/// stand-in never terminates TLS itself (`Secure = Request.IsHttps`).
fn refresh_cookie(ctx: &Ctx, value: &str, expires: &str) -> String {
    let (host, _) = ctx.host();
    format!(
        "{}={value}; expires={expires}; domain={host}; path=/api/v1/auth/refresh; samesite=strict; httponly",
        cookie_name(ctx)
    )
}
