//! Runs the real duplicati-standin binary and walks Duplicati's e2e script against it
//! (duplicati-wire.md §6): login, backup of hostile names, task polling, filesets, browsing in
//! both URL forms (2.3 query-only and 2.0 `/files/<encoded path>`), restore with byte comparison,
//! the WebSocket with both auth forms, and the E13 recording.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

const PASSWORD: &str = "easy1234";
// A debug binary on a busy 2-core machine starts in well under a second; 30 s is the upstream
// CI's own wait for Duplicati (tests.yml "Start server").
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
// Backups and restores here copy a few KiB; a task that is not done in 30 s is stuck.
const TASK_DEADLINE: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(25);

/// encodeURIComponent: everything but A-Z a-z 0-9 - _ . ! ~ * ' ( ) is escaped.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

struct Server {
    child: Child,
    port: u16,
    stdout: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str], data: &Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_duplicati-standin"))
        .arg("--webservice-port=0")
        .arg(format!("--webservice-password={PASSWORD}"))
        .arg(format!("--data-dir={}", data.display()))
        .arg("--record-requests")
        .args(extra)
        .env("SETTINGS_ENCRYPTION_KEY", "test-key-123")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn duplicati-standin");
    // From here on Drop kills and reaps the child, also when a wait below panics.
    let mut srv = Server {
        child,
        port: 0,
        stdout: Vec::new(),
    };
    let out = srv.child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!(
                "no 'Server has started' line within {STARTUP_DEADLINE:?}; stdout so far: {:?}",
                srv.stdout
            );
        };
        srv.stdout.push(line.clone());
        if let Some(p) =
            line.strip_prefix("Server has started and is listening on localhost, port ")
        {
            srv.port = p.trim().parse().expect("port number");
            return srv;
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One request on a fresh connection, target sent byte for byte.
fn http(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head += &format!("Host: 127.0.0.1:{port}\r\n");
    }
    for (n, v) in headers {
        head += &format!("{n}: {v}\r\n");
    }
    head += &format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..i])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[i + 4 + size..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn wait_task(port: u16, auth: &str, id: i64) -> Value {
    let deadline = Instant::now() + TASK_DEADLINE;
    loop {
        let r = http(
            port,
            "GET",
            &format!("/api/v1/task/{id}"),
            &[("Authorization", auth)],
            b"",
        );
        assert_eq!(r.status, 200, "task {id}: {r:?}");
        let v = r.json();
        if v["Status"] == "Completed" || v["Status"] == "Failed" {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} not finished within {TASK_DEADLINE:?}: {v}"
        );
        std::thread::sleep(POLL_EVERY);
    }
}

/// Hostile names (STYLE.md): spaces, + & % # @, unicode, a literal "%2F", a newline, deep folders.
fn hostile_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let files = [
        "a b.txt",
        "plus+sign.txt",
        "amp&er=eq.txt",
        "per%cent.txt",
        "hash#tag.txt",
        "at@sign.txt",
        "ünïcødé ✓.txt",
        "has %2F text.txt",
        "new\nline.txt",
        "sub dir/a+b&c.txt",
        "deep/er/and/deeper/file.bin",
    ];
    let mut m = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let bytes: Vec<u8> = (0..(100 + i * 37)).map(|b| (b * 7 + i) as u8).collect();
        std::fs::write(&p, &bytes).expect("write fixture");
        m.insert(f.to_string(), bytes);
    }
    m
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
        {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

fn login(port: u16) -> (String, String, String) {
    let r = http(
        port,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        json!({"Password": PASSWORD, "RememberMe": true})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.header("set-cookie").expect("refresh cookie").to_string();
    let v = r.json();
    (
        v["AccessToken"].as_str().expect("token").into(),
        v["RefreshNonce"].as_str().expect("nonce").into(),
        cookie,
    )
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_string()
}

#[test]
fn current_profile_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("source");
    let fixtures = hostile_tree(&src);
    let srv = start(&[], &tmp.path().join("data"));
    let port = srv.port;
    assert!(
        srv.stdout
            .iter()
            .all(|l| !l.contains("No database encryption key")),
        "key was given: {:?}",
        srv.stdout
    );

    let h = http(port, "GET", "/health", &[], b"");
    assert_eq!((h.status, h.body.as_slice()), (200, &b"Healthy"[..]));

    // Login: the negative check first has its positive control right after.
    let bad = http(
        port,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        br#"{"password":"nope"}"#,
    );
    assert_eq!(
        (bad.status, bad.json()),
        (401, json!({"Error": "Failed to log in", "Code": 401}))
    );
    let (token, nonce, cookie) = login(port);
    assert!(
        cookie.starts_with(&format!("RefreshToken_{port}=")),
        "{cookie}"
    );
    assert!(
        cookie
            .ends_with("; domain=127.0.0.1; path=/api/v1/auth/refresh; samesite=strict; httponly"),
        "{cookie}"
    );
    let auth = bearer(&token);

    let anon = http(port, "GET", "/api/v1/systeminfo", &[], b"");
    assert_eq!(
        (
            anon.status,
            anon.header("www-authenticate"),
            anon.body.len()
        ),
        (401, Some("Bearer"), 0)
    );
    let evil = http(
        port,
        "GET",
        "/api/v1/systeminfo",
        &[("Host", "evil.example:8200"), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(
        (evil.status, evil.json()),
        (
            403,
            json!({"Error": "Invalid hostname: evil.example", "Code": 403})
        )
    );
    let si = http(
        port,
        "GET",
        "/api/v1/systeminfo",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(si.status, 200);
    assert!(si.json()["APIExtensions"]
        .as_array()
        .expect("array")
        .contains(&json!("v2:backup:list-folder")));

    // Refresh rotation, then reuse of a token two steps old kills the family.
    let r1 = http(
        port,
        "POST",
        "/api/v1/auth/refresh",
        &[("Cookie", &cookie_pair(&cookie))],
        json!({"Nonce": nonce}).to_string().as_bytes(),
    );
    assert_eq!(r1.status, 200, "{r1:?}");
    let c2 = r1.header("set-cookie").expect("rotated").to_string();
    let r2 = http(
        port,
        "POST",
        "/api/v1/auth/refresh",
        &[("Cookie", &cookie_pair(&c2))],
        json!({"Nonce": r1.json()["RefreshNonce"]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r2.status, 200, "{r2:?}");
    let reuse = http(
        port,
        "POST",
        "/api/v1/auth/refresh",
        &[("Cookie", &cookie_pair(&cookie))],
        json!({"Nonce": nonce}).to_string().as_bytes(),
    );
    assert_eq!(
        (reuse.status, reuse.json()["Error"].clone()),
        (401, json!("Failed to refresh token"))
    );
    let dead = http(
        port,
        "GET",
        "/api/v1/systeminfo",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(dead.status, 401, "family invalidated");
    let (token, _, _) = login(port);
    let auth = bearer(&token);

    // Create (validation, then success, then duplicate name).
    let target = tmp.path().join("backups").join("e2e");
    let src_s = format!("{}/", src.display());
    let mut create = json!({"Backup": {"Name": "e2e", "Description": "", "TargetURL": format!("file://{}/", target.display()), "Sources": [src_s], "Settings": [], "Filters": [], "Metadata": {}}});
    let missing = http(
        port,
        "POST",
        "/api/v1/backups",
        &[("Authorization", &auth)],
        create.to_string().as_bytes(),
    );
    assert_eq!(
        (missing.status, missing.json()["Error"].clone()),
        (400, json!("Missing passphrase"))
    );
    create["Backup"]["Settings"] = json!([{"Name": "passphrase", "Value": "pp-e2e"}]);
    let made = http(
        port,
        "POST",
        "/api/v1/backups",
        &[("Authorization", &auth)],
        create.to_string().as_bytes(),
    );
    assert_eq!(
        (made.status, made.json()),
        (200, json!({"ID": "1", "Temporary": false}))
    );
    let dup = http(
        port,
        "POST",
        "/api/v1/backups",
        &[("Authorization", &auth)],
        create.to_string().as_bytes(),
    );
    assert_eq!(dup.status, 409);

    // Run twice; both filesets exist with distinct times.
    for _ in 0..2 {
        let run = http(
            port,
            "POST",
            "/api/v1/backup/1/run",
            &[("Authorization", &auth)],
            b"",
        );
        let v = run.json();
        assert_eq!(v["Status"], "OK");
        let done = wait_task(port, &auth, v["ID"].as_i64().expect("task id"));
        assert_eq!(done["Status"], "Completed", "{done}");
    }
    let fs = http(
        port,
        "GET",
        "/api/v1/backup/1/filesets",
        &[("Authorization", &auth)],
        b"",
    )
    .json();
    let sets = fs.as_array().expect("filesets");
    assert_eq!(sets.len(), 2, "{fs}");
    assert_ne!(sets[0]["Time"], sets[1]["Time"]);
    assert_eq!(sets[0]["FileCount"], json!(fixtures.len()));
    let time = sets[0]["Time"].as_str().expect("Time").to_string();
    assert!(time.ends_with("+00:00"), "{time}");

    // Browse, 2.3 form: the folder only in the query, encoded once.
    let files = |q: &str| {
        http(
            port,
            "GET",
            &format!("/api/v1/backup/1/files?{q}"),
            &[("Authorization", &auth)],
            b"",
        )
    };
    let roots = files(&format!(
        "prefix-only=true&folder-contents=false&time={}",
        enc(&time)
    ))
    .json();
    assert_eq!(roots["Files"], json!([{"Path": src_s, "Sizes": [-1]}]));
    let sub = format!("{src_s}sub dir/");
    let kids = files(&format!(
        "prefix-only=false&folder-contents=true&time={}&filter={}",
        enc(&time),
        enc(&format!("@{sub}"))
    ))
    .json();
    assert_eq!(
        kids["Files"],
        json!([{"Path": format!("{sub}a+b&c.txt"), "Sizes": [fixtures["sub dir/a+b&c.txt"].len()]}])
    );
    let top = files(&format!(
        "prefix-only=false&folder-contents=true&time={}&filter={}",
        enc(&time),
        enc(&format!("@{src_s}"))
    ))
    .json();
    let names: Vec<&str> = top["Files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["Path"].as_str())
        .collect();
    assert!(
        names.contains(&format!("{src_s}has %2F text.txt").as_str())
            && names.contains(&format!("{src_s}ünïcødé ✓.txt").as_str()),
        "{names:?}"
    );
    assert!(names[0].ends_with('/'), "folders first: {names:?}");
    let now = files("prefix-only=true&time=now").json();
    assert_eq!(now["Filesets"][0]["Time"], json!(time));
    // Negative checks, each against the positive ones above.
    assert_eq!(
        files("prefix-only=true").json(),
        json!({"Error": "Invalid or missing time", "Code": 400})
    );
    let decoded_plus = files(&format!(
        "prefix-only=true&time={}",
        time.replace(':', "%3A")
    ));
    assert_eq!(
        decoded_plus.status, 500,
        "a raw '+' is a space under form rules"
    );
    let extra = http(
        port,
        "GET",
        &format!("/api/v1/backup/1/files/{}?time={}", enc(&src_s), enc(&time)),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!((extra.status, extra.body.len()), (404, 0));

    let lf = http(
        port,
        "POST",
        "/api/v2/backup/list-folder",
        &[("Authorization", &auth)],
        json!({"BackupId": "1", "Time": time, "Paths": [sub], "PageSize": 0, "Page": 0})
            .to_string()
            .as_bytes(),
    )
    .json();
    assert_eq!(
        (lf["Success"].clone(), lf["Data"][0]["Path"].clone()),
        (json!(true), json!(format!("{sub}a+b&c.txt")))
    );

    // Restore everything and compare bytes.
    let restore_to = tmp.path().join("restore");
    let body = json!({"paths": null, "time": time, "restore_path": format!("{}/", restore_to.display()), "overwrite": true, "permissions": false, "skip_metadata": false, "passphrase": "pp-e2e"});
    let rt = http(
        port,
        "POST",
        "/api/v1/backup/1/restore",
        &[("Authorization", &auth)],
        body.to_string().as_bytes(),
    )
    .json();
    let done = wait_task(port, &auth, rt["ID"].as_i64().expect("task id"));
    assert_eq!(done["Status"], "Completed", "{done}");
    assert_eq!(read_tree(&restore_to), fixtures);

    // A single file with an @-literal lands under restore_path by its name.
    let one_to = tmp.path().join("restore-one");
    let body = json!({"paths": [format!("@{sub}a+b&c.txt")], "time": "now", "restore_path": one_to.display().to_string(), "overwrite": true});
    let rt = http(
        port,
        "POST",
        "/api/v1/backup/1/restore",
        &[("Authorization", &auth)],
        body.to_string().as_bytes(),
    )
    .json();
    assert_eq!(
        wait_task(port, &auth, rt["ID"].as_i64().expect("id"))["Status"],
        "Completed"
    );
    assert_eq!(
        std::fs::read(one_to.join("a+b&c.txt")).ok().as_ref(),
        fixtures.get("sub dir/a+b&c.txt")
    );

    websocket_both_forms(port, &token);

    // E13: raw request line byte for byte, Host as sent, password seen only in the login body.
    let weird = "/api/v1/backup/1/files/%2Fa%2F/../x?time=2026-01-01T00%3A00%3A00%2B02%3A00";
    let _ = http(
        port,
        "GET",
        weird,
        &[("Authorization", &auth), ("X-Forwarded-Proto", "https")],
        b"",
    );
    let log = http(port, "GET", "/__standin/requests", &[], b"").json();
    let reqs = log["requests"].as_array().expect("requests");
    let last = reqs.last().expect("one request");
    assert_eq!(last["request_line"], json!(format!("GET {weird} HTTP/1.1")));
    assert_eq!(last["host"], json!(format!("127.0.0.1:{port}")));
    assert_eq!(last["forwarded"]["x-forwarded-proto"], json!("https"));
    assert_eq!(last["password_seen"], json!(false));
    assert!(
        reqs.iter()
            .any(|r| r["request_line"] == "POST /api/v1/auth/login HTTP/1.1"
                && r["password_seen"] == json!(true)),
        "login body carries the password"
    );
    assert!(reqs.iter().any(|r| r["upgrade"] == json!("websocket")));
    assert_eq!(
        http(port, "DELETE", "/__standin/requests", &[], b"").status,
        204
    );
}

fn websocket_both_forms(port: u16, token: &str) {
    async_std::task::block_on(async {
        let connect = |q: String| async move {
            let tcp = async_std::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            async_tungstenite::client_async(format!("ws://127.0.0.1:{port}/notifications{q}"), tcp)
                .await
                .expect("upgrade")
                .0
        };
        let text = |m: Option<Result<Message, _>>| -> Value {
            match m {
                Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).expect("json frame"),
                other => panic!("expected a text frame, got {other:?}"),
            }
        };
        // (a) query token: legacystatus arrives right after the 101, unasked.
        let mut a = connect(format!("?token={token}")).await;
        let first = async_std::future::timeout(Duration::from_secs(5), a.next())
            .await
            .expect("a frame right after 101");
        assert_eq!(text(first)["Type"], "legacystatus");
        // (b) first-message auth, then a subscription and a ping.
        let mut b = connect(String::new()).await;
        b.send(Message::text(
            json!({"Version": 1, "Token": token, "Action": "auth"}).to_string(),
        ))
        .await
        .expect("send");
        assert_eq!(
            text(b.next().await),
            json!({"Version": 1, "Message": "Authenticated successfully", "Success": true, "Type": "auth"})
        );
        b.send(Message::text(
            json!({"Version": 1, "Id": "req-1", "Action": "ping"}).to_string(),
        ))
        .await
        .expect("send");
        let pong = text(b.next().await);
        assert_eq!(
            (
                pong["Type"].clone(),
                pong["Message"].clone(),
                pong["Id"].clone()
            ),
            (json!("reply"), json!("pong"), json!("req-1"))
        );
        // Bad token: close 4401 "Invalid token".
        let mut c = connect(String::new()).await;
        c.send(Message::text(
            json!({"Version": 1, "Token": "forged"}).to_string(),
        ))
        .await
        .expect("send");
        match c.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(
                (u16::from(f.code), f.reason.as_str()),
                (4401, "Invalid token")
            ),
            other => panic!("expected close 4401, got {other:?}"),
        }
    });
    let plain = http(port, "GET", "/notifications", &[], b"");
    assert_eq!(plain.status, 400, "non-upgrade GET");
}

#[test]
fn legacy_profile_login_cgi_xsrf_and_encoded_paths() {
    use aws_lc_rs::digest;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("source");
    let fixtures = hostile_tree(&src);
    let srv = start(
        &[
            "--legacy-2.0",
            "--webservice-allowed-hostnames=backup.example",
        ],
        &tmp.path().join("data"),
    );
    let port = srv.port;
    let evil = http(port, "GET", "/", &[("Host", "evil.example")], b"");
    assert_eq!(
        (evil.status, evil.body.as_slice()),
        (
            403,
            &b"The host header sent by the client is not allowed"[..]
        )
    );

    // login.cgi: nonce, then the nonced hash.
    let n = http(
        port,
        "POST",
        "/login.cgi",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"get-nonce=1",
    );
    let nv = n.json();
    let nonce_cookie = n
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("session-nonce="))
        .map(cookie_pair)
        .expect("nonce cookie");
    let salt = STANDARD
        .decode(nv["Salt"].as_str().expect("salt"))
        .expect("b64");
    let nonce = STANDARD
        .decode(nv["Nonce"].as_str().expect("nonce"))
        .expect("b64");
    let stored = digest::digest(&digest::SHA256, &[PASSWORD.as_bytes(), &salt].concat());
    let hash = STANDARD.encode(digest::digest(
        &digest::SHA256,
        &[&nonce[..], stored.as_ref()].concat(),
    ));
    let form = format!("password={}", enc(&hash));
    let ok = http(
        port,
        "POST",
        "/login.cgi",
        &[("Cookie", &nonce_cookie), ("Host", "backup.example")],
        form.as_bytes(),
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let session = ok
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("session-auth="))
        .map(cookie_pair)
        .expect("session");
    let xsrf_cookie = ok
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("xsrf-token="))
        .map(cookie_pair)
        .expect("xsrf cookie");
    let xsrf = xsrf_cookie["xsrf-token=".len()..].to_string();
    let cookies = format!("{session}; {xsrf_cookie}");
    let api = |method: &str, target: &str, body: &[u8]| {
        http(
            port,
            method,
            target,
            &[("Cookie", &cookies), ("X-XSRF-Token", &xsrf)],
            body,
        )
    };

    let no_xsrf = http(port, "GET", "/api/v1/backups", &[("Cookie", &cookies)], b"");
    assert_eq!(no_xsrf.status, 400);
    assert_eq!(api("GET", "/api/v1/backups", b"").status, 200);

    let target = tmp.path().join("backups");
    let src_s = format!("{}/", src.display());
    let create = json!({"Backup": {"Name": "legacy", "TargetURL": format!("file://{}", target.display()), "Sources": [src_s], "Settings": [{"Name": "--no-encryption", "Value": "true"}]}});
    let made = api(
        "POST",
        "/api/v1/backups",
        format!("data={}", enc(&create.to_string())).as_bytes(),
    );
    assert_eq!(made.status, 200, "{made:?}");
    let task = api("POST", "/api/v1/backup/1/run", b"").json()["ID"]
        .as_i64()
        .expect("task");
    let deadline = Instant::now() + TASK_DEADLINE;
    while api("GET", &format!("/api/v1/task/{task}"), b"").json()["Status"] != "Completed" {
        assert!(
            Instant::now() < deadline,
            "legacy backup not done in {TASK_DEADLINE:?}"
        );
        std::thread::sleep(POLL_EVERY);
    }
    let time = api("GET", "/api/v1/backup/1/filesets", b"").json()[0]["Time"]
        .as_str()
        .expect("time")
        .to_string();

    // 2.0 form: the folder encoded in the path (%2F), the query filter present too.
    let sub = format!("{src_s}sub dir/");
    let t = format!(
        "/api/v1/backup/1/files/{}?prefix-only=false&folder-contents=true&time={}&filter={}",
        enc(&sub),
        enc(&time),
        enc(&format!("@{sub}"))
    );
    let v = api("GET", &t, b"").json();
    assert_eq!(v["Files"][0]["Path"], json!(format!("{sub}a+b&c.txt")));
    assert_eq!(v["folder-contents"], json!("true"), "2.0 echoes the query");
    // Without the query filter, the raw path segment is the filter.
    let t = format!(
        "/api/v1/backup/1/files/{}?prefix-only=false&folder-contents=true&time={}",
        enc(&format!("@{sub}")),
        enc(&time)
    );
    assert_eq!(
        api("GET", &t, b"").json()["Files"][0]["Path"],
        json!(format!("{sub}a+b&c.txt"))
    );

    // Restore with the 2.0 form body.
    let out = tmp.path().join("restore");
    let form = format!(
        "time={}&restore-path={}&overwrite=true&paths={}",
        enc(&time),
        enc(&out.display().to_string()),
        enc(&json!([format!("[(?s){}.*]", regex_escape(&src_s))]).to_string())
    );
    let task = api("POST", "/api/v1/backup/1/restore", form.as_bytes()).json()["ID"]
        .as_i64()
        .expect("task");
    let deadline = Instant::now() + TASK_DEADLINE;
    loop {
        let s = api("GET", &format!("/api/v1/task/{task}"), b"").json();
        if s["Status"] == "Completed" {
            break;
        }
        assert!(
            s["Status"] != "Failed" && Instant::now() < deadline,
            "legacy restore: {s}"
        );
        std::thread::sleep(POLL_EVERY);
    }
    assert_eq!(read_tree(&out), fixtures);
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut acc, c| {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            acc.push('\\');
        }
        acc.push(c);
        acc
    })
}
