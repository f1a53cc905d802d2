//! Duplicati's 2.1+ REST API as its UIs call it (duplicati-wire.md §1.2, §2.1, §6).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Conn, Endpoint, Request, Response};
use crate::error::{Error, Result};
use crate::percent;

/// A backup or restore of the test tree takes the stand-in milliseconds and real Duplicati a few
/// seconds; two minutes means it hung.
const TASK_DEADLINE: Duration = Duration::from_secs(120);

/// What Duplicati issued at login: the values the sniffer must never see outside.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub access_token: String,
    pub refresh_nonce: Option<String>,
    /// `RefreshToken_<port>` and its value.
    pub refresh_cookie: Option<(String, String)>,
}

pub struct Api {
    pub endpoint: Endpoint,
    conn: Option<Conn>,
    pub session: Option<Session>,
    /// Every request and status line so far, for failure reports.
    pub transcript: Vec<String>,
}

impl Api {
    pub fn new(endpoint: Endpoint) -> Api {
        Api {
            endpoint,
            conn: None,
            session: None,
            transcript: Vec::new(),
        }
    }

    /// Sends on the kept-alive connection (reconnecting once if the server had closed it).
    pub fn send(&mut self, req: Request) -> Result<Response> {
        let req = req.bearer(self.session.as_ref().map(|s| s.access_token.as_str()));
        let reused = self.conn.is_some();
        let result = match self.conn.as_mut() {
            Some(conn) => conn.send(&req),
            None => Err(Error::msg("not connected")),
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                if reused {
                    self.transcript
                        .push(format!("(kept-alive connection failed: {e}; reconnecting)"));
                }
                let mut conn = Conn::connect(&self.endpoint)?;
                let r = conn.send(&req)?;
                self.conn = Some(conn);
                r
            }
        };
        if response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        self.transcript.push(format!(
            "{} {} -> {} {}",
            req.method, req.target, response.status, response.reason
        ));
        Ok(response)
    }

    /// Sends and insists on `status`; the error shows request and response.
    pub fn expect(&mut self, req: Request, status: u16) -> Result<Response> {
        let shown = req.to_string();
        let response = self.send(req)?;
        if response.status != status {
            crate::bail!("expected {status}, got:\n{response}\nrequest was:\n{shown}");
        }
        Ok(response)
    }

    pub fn expect_json(&mut self, req: Request) -> Result<Value> {
        self.expect(req, 200)?.json()
    }

    /// `POST /api/v1/auth/login` with `RememberMe`, keeping the access token, the refresh
    /// cookie and the refresh nonce.
    pub fn login(&mut self, password: &str) -> Result<Session> {
        self.session = None;
        let response = self.expect(
            Request::new("POST", "/api/v1/auth/login")
                .json(&json!({"Password": password, "RememberMe": true})),
            200,
        )?;
        let body = response.json()?;
        let access_token = body
            .get("AccessToken")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::msg(format!("login answer has no AccessToken:\n{response}")))?
            .to_owned();
        let session = Session {
            access_token,
            refresh_nonce: body
                .get("RefreshNonce")
                .and_then(Value::as_str)
                .map(str::to_owned),
            refresh_cookie: refresh_cookie(&response),
        };
        self.session = Some(session.clone());
        Ok(session)
    }

    /// `POST /api/v1/auth/refresh` with the cookie and nonce, as ngclient does on reload.
    pub fn refresh(&mut self) -> Result<Session> {
        let old = self
            .session
            .clone()
            .ok_or_else(|| Error::msg("refresh before login"))?;
        let (name, value) = old
            .refresh_cookie
            .clone()
            .ok_or_else(|| Error::msg("login set no RefreshToken_<port> cookie"))?;
        let body = match &old.refresh_nonce {
            Some(nonce) => json!({"Nonce": nonce}),
            None => json!({}),
        };
        self.session = None;
        let response = self.expect(
            Request::new("POST", "/api/v1/auth/refresh")
                .header("Cookie", &format!("{name}={value}"))
                .json(&body),
            200,
        )?;
        let json = response.json()?;
        let session = Session {
            access_token: json
                .get("AccessToken")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::msg(format!("refresh answer has no AccessToken:\n{response}"))
                })?
                .to_owned(),
            refresh_nonce: json
                .get("RefreshNonce")
                .and_then(Value::as_str)
                .map(str::to_owned),
            refresh_cookie: refresh_cookie(&response).or(old.refresh_cookie),
        };
        self.session = Some(session.clone());
        Ok(session)
    }

    /// `POST /api/v1/backups` for `/source/` into `file:///backups/<name>/`; returns the ID.
    pub fn create_backup(&mut self, name: &str, passphrase: &str) -> Result<String> {
        let body = json!({"Backup": {
            "Name": name,
            "Description": "duplicati-gate end-to-end test",
            "TargetURL": format!("file:///backups/{name}/"),
            "Sources": [crate::tree::SOURCE_ROOT],
            "Settings": [{"Name": "passphrase", "Value": passphrase}],
            "Filters": [],
            "Metadata": {}
        }});
        let answer = self.expect_json(Request::new("POST", "/api/v1/backups").json(&body))?;
        id_string(answer.get("ID")).ok_or_else(|| Error::msg(format!("no backup ID in {answer}")))
    }

    /// `POST /api/v1/backup/<id>/run`, then waits for the task to complete.
    pub fn run_backup(&mut self, id: &str) -> Result<Value> {
        let answer = self.expect_json(Request::new("POST", &format!("/api/v1/backup/{id}/run")))?;
        let task = id_string(answer.get("ID"))
            .ok_or_else(|| Error::msg(format!("no task ID in {answer}")))?;
        self.wait_task(&task)
    }

    /// Polls `GET /api/v1/task/<task>` until `Completed` (or fails on `Failed`).
    pub fn wait_task(&mut self, task: &str) -> Result<Value> {
        let start = Instant::now();
        loop {
            let state = self.expect_json(Request::new("GET", &format!("/api/v1/task/{task}")))?;
            match state.get("Status").and_then(Value::as_str) {
                Some("Completed") => return Ok(state),
                Some("Failed") => crate::bail!("task {task} failed: {state}"),
                _ if start.elapsed() > TASK_DEADLINE => {
                    crate::bail!("task {task} not done after {TASK_DEADLINE:?}: {state}")
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// `GET /api/v1/backup/<id>/filesets`.
    pub fn filesets(&mut self, id: &str) -> Result<Vec<Value>> {
        let answer = self.expect_json(Request::new(
            "GET",
            &format!("/api/v1/backup/{id}/filesets"),
        ))?;
        answer
            .as_array()
            .cloned()
            .ok_or_else(|| Error::msg(format!("filesets is not a list: {answer}")))
    }

    /// The 2.1+ restore browser: `GET /api/v1/backup/<id>/files?…&filter=%40<folder>`, every
    /// value encoded once with encodeURIComponent, as ngax and ngclient send it.
    pub fn list_folder_target(id: &str, time: &str, folder: &str) -> String {
        format!(
            "/api/v1/backup/{id}/files?prefix-only=false&folder-contents=true&time={}&filter={}",
            percent::encode(time, false),
            percent::encode(&format!("@{folder}"), false)
        )
    }

    /// The roots: `prefix-only=true`.
    pub fn list_roots_target(id: &str, time: &str) -> String {
        format!(
            "/api/v1/backup/{id}/files?prefix-only=true&folder-contents=false&time={}",
            percent::encode(time, false)
        )
    }

    /// The `Path` of every entry in a `/files` answer.
    pub fn paths(answer: &Value) -> Result<Vec<String>> {
        let files = answer
            .get("Files")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::msg(format!("no Files in {answer}")))?;
        files
            .iter()
            .map(|f| {
                f.get("Path")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| Error::msg(format!("entry without Path: {f}")))
            })
            .collect()
    }

    /// `POST /api/v1/backup/<id>/restore` of everything at `time` into `restore_path`, then waits.
    pub fn restore_all(
        &mut self,
        id: &str,
        time: &str,
        restore_path: &str,
        passphrase: &str,
    ) -> Result<Value> {
        let body = json!({
            "paths": null,
            "time": time,
            "restore_path": restore_path,
            "overwrite": true,
            "permissions": false,
            "skip_metadata": false,
            "passphrase": passphrase,
        });
        let answer = self.expect_json(
            Request::new("POST", &format!("/api/v1/backup/{id}/restore")).json(&body),
        )?;
        let task = id_string(answer.get("ID"))
            .ok_or_else(|| Error::msg(format!("no task ID in {answer}")))?;
        self.wait_task(&task)
    }
}

/// The `RefreshToken_<port>` cookie from `Set-Cookie`, if any.
pub fn refresh_cookie(response: &Response) -> Option<(String, String)> {
    response.headers_named("set-cookie").find_map(|c| {
        let pair = c.split(';').next()?.trim();
        let (name, value) = pair.split_once('=')?;
        (name.starts_with("RefreshToken_") && !value.is_empty())
            .then(|| (name.to_owned(), value.to_owned()))
    })
}

/// IDs come as JSON strings (backups) or numbers (tasks).
fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
