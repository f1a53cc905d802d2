//! Routing for the 2.3 profile (the 2.0 profile lives in legacy.rs).
//! // Duplicati/WebserverCore/DuplicatiWebserver.cs (StartAsync: /health, /notifications, static
//! // files), Extensions/WebApplicationExtensions.cs (/api/v1 and /api/v2 groups with the
//! // hostname filter), Endpoints/V1/*.cs

use std::sync::Arc;

use http_types::{Method, Response};

use crate::app::App;
use crate::ctx::Ctx;
use crate::hostcheck::HostCheck;
use crate::{api, legacy, reply, spa, websocket};

/// What a route needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Protected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ep {
    Login,
    Refresh,
    RefreshLogout,
    Signin,
    IssueSignin,
    AuthStatus,
    IssueToken(String),
    SystemInfo,
    ServerState,
    BackupsList,
    BackupsCreate,
    BackupGet(String),
    BackupFiles(String),
    BackupFilesets(String),
    BackupRun(String),
    BackupRestore(String),
    Task(String),
    V2ListFilesets,
    V2ListFolder,
}

pub async fn route(app: &Arc<App>, ctx: Ctx) -> Response {
    let lower = ctx.path.to_ascii_lowercase();
    // E13 (test-only, not Duplicati): outside /api so it never collides with a real route.
    if lower == "/__standin/requests" && app.config.record_requests {
        return match ctx.method {
            Method::Get => reply::json(200, &app.log.snapshot()),
            Method::Delete => {
                app.log.clear();
                reply::empty(204)
            }
            _ => reply::empty(405),
        };
    }
    if app.legacy() {
        return legacy::route(app, ctx).await;
    }
    // DuplicatiWebserver.StartAsync: MapHealthChecks("/health"); no auth, no host check.
    if lower == "/health" {
        return reply::text(200, "Healthy");
    }
    if lower == "/notifications" {
        return websocket::accept(app, &ctx).await;
    }
    if let Some(rest) = lower.strip_prefix("/api/") {
        let original = &ctx.path["/api/".len()..];
        return api_route(app, &ctx, rest, original).await;
    }
    spa::serve(app, &ctx)
}

/// Segments of the path after `/api/`, one trailing slash tolerated (ASP.NET routing ignores it).
fn segments(path: &str) -> Vec<&str> {
    let p = path.strip_suffix('/').unwrap_or(path);
    p.split('/').collect()
}

fn match_ep(method: &Method, lower: &[&str], orig: &[&str]) -> Result<(Ep, Access), u16> {
    use Access::*;
    let id = |i: usize| orig.get(i).map(|s| s.to_string()).unwrap_or_default();
    let post = *method == Method::Post;
    let get = *method == Method::Get;
    let (ep, access, ok) = match lower {
        ["v1", "auth", "login"] => (Ep::Login, Public, post),
        ["v1", "auth", "refresh"] => (Ep::Refresh, Public, post),
        ["v1", "auth", "refresh", "logout"] => (Ep::RefreshLogout, Public, post),
        ["v1", "auth", "signin"] => (Ep::Signin, Public, post),
        ["v1", "auth", "issuesignintoken"] => (Ep::IssueSignin, Public, post),
        // Auth.cs: status is anonymous and reads the user if a token came along.
        ["v1", "auth", "status"] => (Ep::AuthStatus, Public, post),
        ["v1", "auth", "issuetoken", _] => (Ep::IssueToken(id(3)), Protected, post),
        ["v1", "systeminfo"] => (Ep::SystemInfo, Protected, get),
        ["v1", "serverstate"] => (Ep::ServerState, Protected, get),
        ["v1", "backups"] => (
            if post {
                Ep::BackupsCreate
            } else {
                Ep::BackupsList
            },
            Protected,
            post || get,
        ),
        ["v1", "backup", _] => (Ep::BackupGet(id(2)), Protected, get),
        ["v1", "backup", _, "files"] => (Ep::BackupFiles(id(2)), Protected, get),
        ["v1", "backup", _, "filesets"] => (Ep::BackupFilesets(id(2)), Protected, get),
        ["v1", "backup", _, "run"] | ["v1", "backup", _, "start"] => {
            (Ep::BackupRun(id(2)), Protected, post)
        }
        ["v1", "backup", _, "restore"] => (Ep::BackupRestore(id(2)), Protected, post),
        ["v1", "task", _] => (Ep::Task(id(2)), Protected, get),
        ["v2", "backup", "list-filesets"] => (Ep::V2ListFilesets, Protected, post),
        ["v2", "backup", "list-folder"] => (Ep::V2ListFolder, Protected, post),
        // Kestrel: no endpoint => 404 with an empty body (so `/files/<more>` is 404).
        _ => return Err(404),
    };
    if ok {
        Ok((ep, access))
    } else {
        Err(405)
    }
}

async fn api_route(app: &Arc<App>, ctx: &Ctx, lower: &str, original: &str) -> Response {
    let (ep, access) = match match_ep(&ctx.method, &segments(lower), &segments(original)) {
        Ok(x) => x,
        Err(code) => return reply::empty(code),
    };
    // Authorization runs before the hostname endpoint filter: a protected route without a token
    // answers 401 even for a bad Host. // HostnameFilter.cs is an IEndpointFilter.
    if access == Access::Protected && app.auth.authenticate(ctx, false).is_none() {
        return reply::challenge();
    }
    let (host, _) = ctx.host();
    if !app.hosts.allows(&host) {
        return HostCheck::refuse_current(&host);
    }
    api::dispatch(app, ctx, ep).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: Method, path: &str) -> Result<Ep, u16> {
        let lower = path.to_ascii_lowercase();
        match_ep(&method, &segments(&lower), &segments(path)).map(|x| x.0)
    }

    #[test]
    fn files_route_is_exact() {
        assert_eq!(
            m(Method::Get, "v1/backup/1/files"),
            Ok(Ep::BackupFiles("1".into()))
        );
        assert_eq!(
            m(Method::Get, "v1/backup/1/files/"),
            Ok(Ep::BackupFiles("1".into()))
        );
        assert_eq!(m(Method::Get, "v1/backup/1/files/%2Fsrc%2F"), Err(404));
        assert_eq!(m(Method::Get, "v1/backup/1/files//src/"), Err(404));
        assert_eq!(m(Method::Post, "v1/backup/1/files"), Err(405));
        assert_eq!(m(Method::Post, "V1/Auth/Login"), Ok(Ep::Login));
    }
}
