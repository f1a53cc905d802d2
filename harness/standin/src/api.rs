//! Handlers behind /api/v1 and /api/v2 (2.3 profile; the 2.0 profile reuses the backup ones).
//! // Duplicati/WebserverCore/Endpoints/V1/Backups.cs, Backup/BackupGet.cs, Backup/BackupPost.cs,
//! // Tasks.cs, SystemInfo.cs, V2/BackupListing.cs

use std::sync::Arc;

use http_types::Response;
use serde_json::{json, Value};

use crate::app::App;
use crate::backups::{AddError, Backup};
use crate::browse::{self, Filter, ListFlags};
use crate::ctx::{field, field_str, Ctx};
use crate::restore::RestoreJob;
use crate::routes::Ep;
use crate::tasks::Job;
use crate::timeparse::{format_time, parse_time_interval};
use crate::{fileset, reply, status};

/// An error answer, boxed: a `Response` is large and travels through `?`.
pub type Failure = Box<Response>;

pub async fn dispatch(app: &Arc<App>, ctx: &Ctx, ep: Ep) -> Response {
    match ep {
        Ep::Login => app.auth.login(ctx),
        Ep::Refresh => app.auth.refresh(ctx),
        Ep::RefreshLogout => app.auth.logout(ctx),
        Ep::Signin => app.auth.signin(ctx),
        Ep::IssueSignin => app.auth.issue_signin(ctx),
        Ep::AuthStatus => app.auth.status(ctx),
        Ep::IssueToken(op) => app.auth.issue_token(&op),
        Ep::SystemInfo => reply::json(200, &status::system_info(app)),
        Ep::ServerState => match status::server_state(app, ctx).await {
            Ok(v) => reply::json(200, &v),
            Err(msg) => reply::error(400, msg),
        },
        Ep::BackupsList => backups_list(app),
        Ep::BackupsCreate => backups_create(app, ctx.json(), ctx.query("temporary")),
        Ep::BackupGet(id) => with_backup(app, &id, |b| backup_get(&b)),
        Ep::BackupFiles(id) => with_backup(app, &id, |b| files(ctx, &b, None)),
        Ep::BackupFilesets(id) => with_backup(app, &id, |b| filesets(&b)),
        Ep::BackupRun(id) => with_backup(app, &id, |b| run(app, b)),
        Ep::BackupRestore(id) => match ctx.json() {
            Some(body) => with_backup(app, &id, |b| restore(app, b, RestoreJob::from_json(&body))),
            None => reply::empty(400),
        },
        Ep::Task(id) => task(app, &id),
        Ep::V2ListFilesets => v2_list_filesets(app, ctx),
        Ep::V2ListFolder => v2_list_folder(app, ctx),
    }
}

/// BackupGet.GetBackup: `404 {"Error":"Backup not found","Code":404}`.
pub fn with_backup(app: &App, id: &str, f: impl FnOnce(Backup) -> Response) -> Response {
    match app.store.get(id) {
        Some(b) => f(b),
        None => reply::error(404, "Backup not found"),
    }
}

fn backups_list(app: &App) -> Response {
    let list: Vec<Value> = app
        .store
        .list()
        .iter()
        .map(|b| json!({"Backup": b.to_json(), "Schedule": null}))
        .collect();
    reply::json(200, &Value::Array(list))
}

/// POST /api/v1/backups ⇒ `{"ID":"<n>","Temporary":false}` (Dto/CreateBackupDto.cs).
pub fn backups_create(app: &App, body: Option<Value>, temporary: Option<&str>) -> Response {
    let Some(body) = body else {
        return reply::empty(400);
    };
    let temporary = temporary.is_some_and(|t| t.eq_ignore_ascii_case("true"));
    match app.store.add(&body, temporary) {
        Ok(id) => reply::json(200, &json!({ "ID": id, "Temporary": temporary })),
        Err(AddError::BadRequest(m)) => reply::error(400, &m),
        Err(AddError::Conflict(m)) => reply::error(409, &m),
    }
}

/// GetBackupResultDto(Schedule, Backup, DisplayNames).
pub fn backup_get(b: &Backup) -> Response {
    let names: serde_json::Map<String, Value> =
        b.sources.iter().map(|s| (s.clone(), json!(s))).collect();
    reply::json(
        200,
        &json!({ "Schedule": null, "Backup": b.to_json(), "DisplayNames": names }),
    )
}

pub fn run(app: &App, b: Backup) -> Response {
    let id = app.tasks.enqueue(Job::Backup(b));
    app.events.publish(crate::events::Event::StatusChanged);
    reply::json(200, &json!({ "Status": "OK", "ID": id }))
}

pub fn restore(app: &App, b: Backup, job: RestoreJob) -> Response {
    let id = app.tasks.enqueue(Job::Restore(b, job));
    app.events.publish(crate::events::Event::StatusChanged);
    reply::json(200, &json!({ "Status": "OK", "ID": id }))
}

fn task(app: &App, id: &str) -> Response {
    // Tasks.cs: `{taskid}` binds as a long; a non-number matches no endpoint.
    let Ok(id) = id.parse::<i64>() else {
        return reply::empty(404);
    };
    match app.tasks.state(id) {
        Some(v) => reply::json(200, &v),
        None => reply::error(404, "No such task found"),
    }
}

/// BackupGet.ExecuteGetFilesetsAsync: newest first, Version 0 = newest.
pub fn filesets(b: &Backup) -> Response {
    let target = match fileset::target_dir(&b.target_url) {
        Ok(t) => t,
        Err(_) => return reply::internal(),
    };
    if !target.is_dir() {
        return reply::error(500, "folder-missing");
    }
    let sets = fileset::load_all(&target);
    let v: Vec<Value> = sets.iter().enumerate().map(|(i, f)| f.summary(i)).collect();
    reply::json(200, &Value::Array(v))
}

fn bool_query(ctx: &Ctx, key: &str) -> Result<bool, Failure> {
    match ctx.query(key) {
        None | Some("") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        // ASP.NET cannot bind the bool: 400 with an empty body.
        Some(_) => Err(Box::new(reply::empty(400))),
    }
}

/// BackupGet.SearchFilesAsync. `path_filter` is the 2.0 `<rest>` after `/files/`, used only when
/// the query carries no `filter`; `echo` adds the decoded query parameters (2.0 only).
pub fn files(ctx: &Ctx, b: &Backup, path_filter: Option<String>) -> Response {
    match files_value(ctx, b, path_filter) {
        Ok(v) => reply::json(200, &v),
        Err(r) => *r,
    }
}

pub fn files_value(ctx: &Ctx, b: &Backup, path_filter: Option<String>) -> Result<Value, Failure> {
    let all_versions = bool_query(ctx, "all-versions")?;
    let prefix_only = bool_query(ctx, "prefix-only")?;
    let folder_contents = bool_query(ctx, "folder-contents")?;
    let time = ctx.query("time").unwrap_or("");
    if time.trim().is_empty() && !all_versions {
        return Err(Box::new(reply::error(400, "Invalid or missing time")));
    }
    let target = fileset::target_dir(&b.target_url).map_err(|_| Box::new(reply::internal()))?;
    let sets = fileset::load_all(&target);
    let chosen: Vec<(usize, &fileset::Fileset)> = if all_versions {
        sets.iter().enumerate().collect()
    } else {
        // Timeparser.ParseTimeInterval throws a plain Exception ⇒ the generic 500.
        let t = parse_time_interval(time, chrono::Utc::now())
            .map_err(|_| Box::new(reply::internal()))?;
        browse::select(&sets, t).into_iter().collect()
    };
    let filter_text = ctx.query("filter").map(String::from).or(path_filter);
    let filter = match filter_text.as_deref().map(Filter::parse) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(_)) => return Err(Box::new(reply::internal())),
    };
    let flags = ListFlags {
        prefix_only,
        folder_contents,
    };
    Ok(browse::files_response(&chosen, filter.as_ref(), flags))
}

fn body_backup(app: &App, ctx: &Ctx) -> Result<(Value, Backup), Failure> {
    let body = ctx.json().ok_or_else(|| Box::new(reply::empty(400)))?;
    let id = field(&body, "BackupId")
        .map(|v| {
            v.as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_default();
    let b = app
        .store
        .get(&id)
        .ok_or_else(|| Box::new(reply::v2_failure(404, "Backup not found")))?;
    Ok((body, b))
}

/// POST /api/v2/backup/list-filesets `{"BackupId"}` ⇒ paged envelope.
fn v2_list_filesets(app: &App, ctx: &Ctx) -> Response {
    let (_, b) = match body_backup(app, ctx) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Ok(target) = fileset::target_dir(&b.target_url) else {
        return reply::v2_failure(500, "Invalid target");
    };
    let sets = fileset::load_all(&target);
    let data: Vec<Value> = sets
        .iter()
        .enumerate()
        .map(|(i, f)| json!({"Version": i, "Time": format_time(f.time), "IsFullBackup": true, "FileCount": f.file_count(), "FileSizes": f.file_sizes()}))
        .collect();
    let n = data.len();
    reply::json(
        200,
        &json!({"Success": true, "Error": null, "StatusCode": "OK", "Data": data, "PageInfo": {"Page": 1, "PageSize": n, "Total": n, "Pages": 1}}),
    )
}

/// POST /api/v2/backup/list-folder `{"BackupId","Time","Paths","PageSize","Page"}`.
fn v2_list_folder(app: &App, ctx: &Ctx) -> Response {
    let (body, b) = match body_backup(app, ctx) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(time) = field_str(&body, "Time").filter(|t| !t.trim().is_empty()) else {
        return reply::v2_failure(400, "Invalid or missing time");
    };
    let Ok(t) = parse_time_interval(time, chrono::Utc::now()) else {
        return reply::v2_failure(400, "Invalid time");
    };
    let Ok(target) = fileset::target_dir(&b.target_url) else {
        return reply::v2_failure(500, "Invalid target");
    };
    let sets = fileset::load_all(&target);
    let Some((_, set)) = browse::select(&sets, t) else {
        return reply::v2_failure(404, "No fileset found for the given time");
    };
    let paths: Option<Vec<String>> = field(&body, "Paths").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|p| p.as_str().map(String::from))
            .collect()
    });
    let items = browse::list_folder_items(set, paths.as_deref());
    let total = items.len();
    let page_size = field(&body, "PageSize")
        .and_then(Value::as_u64)
        .filter(|&s| s > 0)
        .map(|s| s as usize)
        .unwrap_or(total.max(1));
    let page = field(&body, "Page").and_then(Value::as_u64).unwrap_or(0) as usize;
    let data: Vec<Value> = items
        .into_iter()
        .skip(page * page_size)
        .take(page_size)
        .collect();
    let pages = total.div_ceil(page_size);
    reply::json(
        200,
        &json!({"Success": true, "Error": null, "StatusCode": "OK", "Data": data, "PageInfo": {"Page": page, "PageSize": page_size, "Total": total, "Pages": pages}}),
    )
}
