//! Server status and system info documents.
//! // Duplicati/WebserverCore/Dto/ServerStatusDto.cs, Services/SystemInfoProvider.cs,
//! // Endpoints/V1/ServerState.cs (long poll: lasteventid, longpoll, duration 10 s - 1 h)

use std::time::Duration;

use futures::FutureExt;
use serde_json::{json, Value};

use crate::app::App;
use crate::ctx::Ctx;
use crate::timeparse::parse_timespan;

/// ServerStatusDto (the WebSocket's `legacystatus` adds `"Type":"legacystatus"`).
pub fn server_status(app: &App) -> Value {
    let active = app.tasks.active();
    let mut queue: Vec<Value> = app
        .tasks
        .waiting()
        .into_iter()
        .map(|(id, b)| json!({"Item1": id, "Item2": b}))
        .collect();
    if let Some((id, b)) = &active {
        queue.insert(0, json!({"Item1": id, "Item2": b}));
    }
    json!({
        "ActiveTask": active.map(|(id, b)| json!({"Item1": id, "Item2": b})),
        "ProgramState": "Running",
        "SchedulerQueueIds": queue,
        "ProposedSchedule": [],
        "HasWarning": false,
        "HasError": false,
        "SuggestedStatusIcon": if app.tasks.active().is_some() { "Active" } else { "Ready" },
        "EstimatedPauseEnd": "0001-01-01T00:00:00",
        "LastEventID": app.events.last_event_id(),
        "LastDataUpdateID": app.events.last_event_id(),
        "LastNotificationUpdateID": 0,
        "UpdatedVersion": null,
        "UpdaterState": "Waiting",
        "UpdateDownloadLink": null,
        "UpdateDownloadProgress": 0,
    })
}

pub fn legacy_status_message(app: &App) -> Value {
    let mut v = server_status(app);
    if let Some(o) = v.as_object_mut() {
        o.insert("Type".into(), json!("legacystatus"));
    }
    v
}

/// GET /api/v1/systeminfo: the fields clients read, and the APIExtensions ngclient checks.
pub fn system_info(app: &App) -> Value {
    let (version, name) = if app.legacy() {
        ("2.0.8.1", "2.0.8.1_beta_2024-05-07")
    } else {
        ("2.3.0.4", "2.3.0.4_stable_2026-07-09")
    };
    json!({
        "APIVersion": 1,
        "PasswordPlaceholder": "***************",
        "ServerVersion": version,
        "ServerVersionName": format!("- {name}"),
        "ServerVersionType": if app.legacy() { "Beta" } else { "Stable" },
        "StartedBy": "Server",
        "DefaultUpdateChannel": "Stable",
        "DefaultUsageReportLevel": "Information",
        "ServerTime": crate::timeparse::format_time(chrono::Utc::now()),
        "OSType": "Linux",
        "DirectorySeparator": "/",
        "PathSeparator": ":",
        "CaseSensitiveFilesystem": true,
        "MachineName": "duplicati-standin",
        "PackageTypeId": "linux-x64-gui",
        "UserName": "standin",
        "NewLine": "\n",
        "CLRVersion": "8.0.0",
        "APIExtensions": if app.legacy() {
            json!([])
        } else {
            json!(["v1:websocket:authenticate", "v2:backup:list-filesets", "v2:backup:list-folder"])
        },
    })
}

/// GET /api/v1/serverstate[?lasteventid=N&longpoll=true&duration=299s]: with long poll, wait
/// until an event newer than N or the duration (10 s to 1 h) passes.
pub async fn server_state(app: &App, ctx: &Ctx) -> Result<Value, &'static str> {
    let longpoll = ctx
        .query("longpoll")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if longpoll {
        let last: i64 = ctx
            .query("lasteventid")
            .and_then(|v| v.parse().ok())
            .ok_or("When activating long poll, the request must include the last event id")?;
        let dur = ctx
            .query("duration")
            .and_then(parse_timespan)
            .ok_or("Invalid duration")?;
        if dur < Duration::from_secs(10) || dur > Duration::from_secs(3600) {
            return Err("Long poll duration must be at least 10 seconds and less than one hour");
        }
        let rx = app.events.subscribe();
        if app.events.last_event_id() == last {
            let timeout = async_std::task::sleep(dur).fuse();
            futures::pin_mut!(timeout);
            let wait = rx.recv().fuse();
            futures::pin_mut!(wait);
            futures::select! {
                _ = timeout => {},
                _ = wait => {},
            }
        }
    }
    Ok(server_status(app))
}
