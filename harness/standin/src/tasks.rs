//! The task queue: one worker runs backups and restores in order, like Duplicati's queue runner.
//! // Duplicati/WebserverCore/Endpoints/V1/Tasks.cs, Services/TaskQueueService.cs (GetTaskInfo),
//! // Dto/GetTaskStateDto.cs

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_std::channel::{self, Receiver, Sender};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::app::App;
use crate::backups::Backup;
use crate::events::Event;
use crate::restore::RestoreJob;
use crate::{fileset, restore};

pub enum Job {
    Backup(Backup),
    Restore(Backup, RestoreJob),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Waiting,
    Running,
    Completed,
    Failed,
}

impl TaskStatus {
    fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Waiting => "Waiting",
            TaskStatus::Running => "Running",
            TaskStatus::Completed => "Completed",
            TaskStatus::Failed => "Failed",
        }
    }
}

struct TaskInfo {
    backup_id: String,
    status: TaskStatus,
    started: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    error: Option<String>,
}

pub struct Tasks {
    map: Mutex<BTreeMap<i64, TaskInfo>>,
    next: AtomicI64,
    tx: Sender<(i64, Job)>,
}

fn dotnet_time(t: DateTime<Utc>) -> String {
    // System.Text.Json writes a local DateTime with 7 fraction digits and the offset.
    // chrono has no 7-digit fraction specifier; .NET ticks are 100 ns.
    format!(
        "{}.{:07}+00:00",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

impl Tasks {
    pub fn new() -> (Tasks, Receiver<(i64, Job)>) {
        let (tx, rx) = channel::unbounded();
        (
            Tasks {
                map: Mutex::new(BTreeMap::new()),
                next: AtomicI64::new(1),
                tx,
            },
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, TaskInfo>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job; the answer to run/restore is `{"Status":"OK","ID":<task>}`.
    pub fn enqueue(&self, job: Job) -> i64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let backup_id = match &job {
            Job::Backup(b) | Job::Restore(b, _) => b.id.clone(),
        };
        self.lock().insert(
            id,
            TaskInfo {
                backup_id,
                status: TaskStatus::Waiting,
                started: None,
                finished: None,
                error: None,
            },
        );
        // The receiver lives as long as the worker, i.e. the process.
        let _ = self.tx.try_send((id, job));
        id
    }

    /// GetTaskStateDto, or None for "No such task found".
    pub fn state(&self, id: i64) -> Option<Value> {
        let map = self.lock();
        let t = map.get(&id)?;
        Some(json!({
            "Status": t.status.as_str(),
            "ID": id,
            "TaskStarted": t.started.map(dotnet_time),
            "TaskFinished": t.finished.map(dotnet_time),
            "ErrorMessage": t.error,
            "Exception": t.error.as_ref().map(|e| format!("System.Exception: {e}")),
        }))
    }

    /// (task id, backup id) of the running task, for ServerStatusDto.ActiveTask.
    pub fn active(&self) -> Option<(i64, String)> {
        self.lock()
            .iter()
            .find(|(_, t)| t.status == TaskStatus::Running)
            .map(|(id, t)| (*id, t.backup_id.clone()))
    }

    pub fn waiting(&self) -> Vec<(i64, String)> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.status == TaskStatus::Waiting)
            .map(|(id, t)| (*id, t.backup_id.clone()))
            .collect()
    }

    fn set(&self, id: i64, f: impl FnOnce(&mut TaskInfo)) {
        if let Some(t) = self.lock().get_mut(&id) {
            f(t);
        }
    }
}

/// Runs queued jobs one at a time, publishing `StatusChanged` and `TaskCompleted`.
pub async fn worker(app: Arc<App>, rx: Receiver<(i64, Job)>) {
    while let Ok((id, job)) = rx.recv().await {
        app.tasks.set(id, |t| {
            t.status = TaskStatus::Running;
            t.started = Some(Utc::now());
        });
        app.events.publish(Event::StatusChanged);
        let result = async_std::task::spawn_blocking(move || run(job)).await;
        app.tasks.set(id, |t| {
            t.finished = Some(Utc::now());
            match result {
                Ok(()) => t.status = TaskStatus::Completed,
                Err(e) => {
                    t.status = TaskStatus::Failed;
                    t.error = Some(e);
                }
            }
        });
        if let Some(state) = app.tasks.state(id) {
            app.events.publish(Event::TaskCompleted(state));
        }
        app.events.publish(Event::StatusChanged);
    }
}

fn run(job: Job) -> Result<(), String> {
    match job {
        Job::Backup(b) => {
            let target = fileset::target_dir(&b.target_url)?;
            fileset::write(&target, &b.sources).map(|_| ())
        }
        Job::Restore(b, r) => restore::run(&b, &r),
    }
}
