//! Restore: write the stored bytes of the selected entries under `restore_path`.
//! // Duplicati/WebserverCore/Dto/RestoreInputDto.cs (lower_snake names),
//! // Endpoints/V1/Backup/BackupPost.cs (ExecuteRestoreAsync),
//! // Duplicati/Library/Main/Operation/RestoreHandler.cs (largest common prefix mapping)

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::backups::Backup;
use crate::browse::Filter;
use crate::ctx::{field, field_bool, field_str};
use crate::fileset::{self, Entry};
use crate::timeparse::parse_time_interval;

#[derive(Debug, Clone, Default)]
pub struct RestoreJob {
    /// `None` = everything.
    pub paths: Option<Vec<String>>,
    pub time: String,
    /// Empty = original locations.
    pub restore_path: String,
    pub overwrite: bool,
    pub passphrase: Option<String>,
}

impl RestoreJob {
    /// 2.1+ JSON body `{"paths","time","restore_path","overwrite","permissions","skip_metadata","passphrase"}`.
    pub fn from_json(v: &Value) -> RestoreJob {
        RestoreJob {
            paths: field(v, "paths").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            }),
            time: field_str(v, "time").unwrap_or("now").to_string(),
            restore_path: field_str(v, "restore_path").unwrap_or("").to_string(),
            overwrite: field_bool(v, "overwrite").unwrap_or(false),
            passphrase: field_str(v, "passphrase").map(String::from),
        }
    }

    /// 2.0 form body: `time`, `restore-path`, `overwrite`, `passphrase`, `paths=<JSON array>`.
    /// // @2.0 Duplicati/Server/WebServer/RESTMethods/Backup.cs (Restore)
    pub fn from_form(f: &[(String, String)]) -> RestoreJob {
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        RestoreJob {
            paths: get("paths").and_then(|p| serde_json::from_str::<Vec<String>>(p).ok()),
            time: get("time").unwrap_or("now").to_string(),
            restore_path: get("restore-path").unwrap_or("").to_string(),
            overwrite: get("overwrite").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            passphrase: get("passphrase").map(String::from),
        }
    }
}

/// Folder part shared by all paths (RestoreHandler's largest prefix, cut at a `/`).
fn largest_prefix<'a>(paths: impl Iterator<Item = &'a str>) -> String {
    let mut prefix: Option<String> = None;
    for p in paths {
        let folder = match p.rfind('/') {
            Some(i) => &p[..=i],
            None => "",
        };
        prefix = Some(match prefix {
            None => folder.to_string(),
            Some(cur) => {
                let mut n = cur
                    .bytes()
                    .zip(folder.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                while n > 0 && !cur.is_char_boundary(n) {
                    n -= 1;
                }
                let common = &cur[..n];
                common[..common.rfind('/').map(|i| i + 1).unwrap_or(0)].to_string()
            }
        });
    }
    prefix.unwrap_or_default()
}

pub fn run(b: &Backup, job: &RestoreJob) -> Result<(), String> {
    if let (Some(given), Some(stored)) = (job.passphrase.as_deref(), b.setting("passphrase")) {
        if !given.is_empty() && given != stored {
            return Err("Failed to decrypt data (invalid passphrase?)".into());
        }
    }
    let target = fileset::target_dir(&b.target_url)?;
    let sets = fileset::load_all(&target);
    let time = parse_time_interval(&job.time, chrono::Utc::now())?;
    let (_, set) =
        crate::browse::select(&sets, time).ok_or("No filesets found on remote target")?;
    let filters: Option<Vec<Filter>> = match &job.paths {
        None => None,
        Some(p) => Some(
            p.iter()
                .map(|s| Filter::parse(s))
                .collect::<Result<_, _>>()?,
        ),
    };
    // A literal folder selects the folder and everything below it, like the UI's folder picks.
    let selected: Vec<&Entry> = set
        .entries
        .iter()
        .filter(|e| match &filters {
            None => true,
            Some(fs) => fs.iter().any(|f| {
                f.matches(&e.path) || matches!(f, Filter::Literal(l) if l.ends_with('/') && e.path.starts_with(l.as_str()))
            }),
        })
        .collect();
    if selected.is_empty() {
        return Err("Restore completed without errors but no files were restored".into());
    }
    let prefix = if job.restore_path.is_empty() {
        String::new()
    } else {
        largest_prefix(
            selected
                .iter()
                .filter(|e| !e.is_dir())
                .map(|e| e.path.as_str()),
        )
    };
    for e in &selected {
        let rel = e.path.strip_prefix(prefix.as_str()).unwrap_or(&e.path);
        let dest: PathBuf = if job.restore_path.is_empty() {
            PathBuf::from(&e.path)
        } else {
            PathBuf::from(&job.restore_path).join(rel.trim_start_matches('/'))
        };
        if e.is_dir() {
            if !e.path.starts_with(prefix.as_str()) || rel.is_empty() {
                continue;
            }
            fs::create_dir_all(&dest)
                .map_err(|err| format!("Failed to create {}: {err}", dest.display()))?;
            continue;
        }
        let Some(src) = set.blob_path(e) else {
            continue;
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|err| format!("Failed to create {}: {err}", parent.display()))?;
        }
        let dest = if !job.overwrite && dest.exists() {
            renamed(&dest)
        } else {
            dest
        };
        fs::copy(&src, &dest).map_err(|err| format!("Failed to restore {}: {err}", e.path))?;
    }
    Ok(())
}

/// RestoreHandler without --overwrite keeps the old file and writes the new one beside it with
/// a timestamp before the extension.
fn renamed(dest: &std::path::Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H%M%S");
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match dest.extension() {
        Some(ext) => format!("{stem}.{stamp}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{stamp}"),
    };
    dest.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_a_folder() {
        let p = ["/source/sub dir/a+b.txt", "/source/sub dir/deep/x"];
        assert_eq!(largest_prefix(p.iter().copied()), "/source/sub dir/");
        let q = ["/source/a", "/source/sub/b"];
        assert_eq!(largest_prefix(q.iter().copied()), "/source/");
        let r = ["/source/abc/x", "/source/abd/y"];
        assert_eq!(largest_prefix(r.iter().copied()), "/source/");
    }

    #[test]
    fn form_and_json_bodies() {
        let j = RestoreJob::from_json(
            &serde_json::json!({"Paths": null, "time": "now", "restore_path": "/r/", "overwrite": true}),
        );
        assert!(j.paths.is_none() && j.overwrite && j.restore_path == "/r/");
        let f = RestoreJob::from_form(&[
            ("paths".into(), r#"["@/s/a","[/s/d/.*]"]"#.into()),
            ("restore-path".into(), "/r".into()),
        ]);
        assert_eq!(f.paths.map(|p| p.len()), Some(2));
    }
}
