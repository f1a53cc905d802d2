//! The stand-in's backup format, in the `file://` target folder.
//!
//! Duplicati writes dblock/dindex/dlist volumes; the stand-in only needs to give back true bytes,
//! so each fileset is one folder `duplicati-standin-<unix time>/` holding `manifest.json` (time,
//! sources, entries) and `blobs/<n>` with each file's bytes. Blob names are numbers so hostile
//! source names never become names on the target. Paths are Duplicati paths: absolute, folders
//! end with `/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::timeparse::format_time;

const PREFIX: &str = "duplicati-standin-";

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub path: String,
    /// Bytes for files; -1 for folders (Duplicati reports folder sizes as -1).
    pub size: i64,
    pub blob: Option<String>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.path.ends_with('/')
    }
}

#[derive(Debug, Clone)]
pub struct Fileset {
    pub dir: PathBuf,
    pub time: DateTime<Utc>,
    pub sources: Vec<String>,
    pub entries: Vec<Entry>,
}

impl Fileset {
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| !e.is_dir()).count()
    }

    pub fn file_sizes(&self) -> i64 {
        self.entries
            .iter()
            .filter(|e| !e.is_dir())
            .map(|e| e.size)
            .sum()
    }

    /// ListResultFileset as `GET /backup/{id}/filesets` writes it.
    pub fn summary(&self, version: usize) -> Value {
        json!({
            "Version": version,
            "IsFullBackup": 1,
            "Time": format_time(self.time),
            "FileCount": self.file_count(),
            "FileSizes": self.file_sizes(),
        })
    }

    pub fn blob_path(&self, e: &Entry) -> Option<PathBuf> {
        e.blob.as_ref().map(|b| self.dir.join("blobs").join(b))
    }
}

/// `file:///backups/e2e/` (or `file://relative`) to a folder; options after `?` are dropped.
/// // Duplicati/Library/Backend/File/FileBackend.cs (the path is the URL's local path)
pub fn target_dir(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| format!("The stand-in only writes file:// targets, not {url:?}"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() {
        return Err("The target folder is empty".into());
    }
    Ok(PathBuf::from(
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned(),
    ))
}

/// All filesets in `target`, newest first (Version 0 is the newest, as in Duplicati).
pub fn load_all(target: &Path) -> Vec<Fileset> {
    let Ok(rd) = fs::read_dir(target) else {
        return Vec::new();
    };
    let mut sets: Vec<Fileset> = rd
        .filter_map(Result::ok)
        .filter(|d| d.file_name().to_string_lossy().starts_with(PREFIX))
        .filter_map(|d| load(&d.path()).ok())
        .collect();
    sets.sort_by_key(|f| std::cmp::Reverse(f.time));
    sets
}

fn load(dir: &Path) -> io::Result<Fileset> {
    let v: Value = serde_json::from_slice(&fs::read(dir.join("manifest.json"))?)?;
    let time = v["Time"]
        .as_i64()
        .and_then(|t| Utc.timestamp_opt(t, 0).single());
    let time = time.ok_or_else(|| io::Error::other("manifest without Time"))?;
    let strs = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let entries = v["Entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some(Entry {
                        path: e["Path"].as_str()?.to_string(),
                        size: e["Size"].as_i64()?,
                        blob: e["Blob"].as_str().map(String::from),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Fileset {
        dir: dir.to_path_buf(),
        time,
        sources: strs("Sources"),
        entries,
    })
}

/// Copies every file under `sources` into a new fileset. Blocking; run off the reactor.
pub fn write(target: &Path, sources: &[String]) -> Result<Fileset, String> {
    let mut entries = Vec::new();
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut roots = Vec::new();
    for s in sources {
        let p = PathBuf::from(s);
        let meta = fs::metadata(&p)
            .map_err(|e| format!("The source folder {s} does not exist, aborting backup ({e})"))?;
        if meta.is_dir() {
            let root = if s.ends_with('/') {
                s.clone()
            } else {
                format!("{s}/")
            };
            walk(&p, &root, &mut entries, &mut files)
                .map_err(|e| format!("Failed to read {s}: {e}"))?;
            roots.push(root);
        } else {
            files.push((p, s.clone()));
            roots.push(s.clone());
        }
    }
    fs::create_dir_all(target)
        .map_err(|e| format!("Cannot create the target folder {}: {e}", target.display()))?;
    // Two backups in the same second still get distinct times: Duplicati's Time has second
    // precision and one fileset per timestamp. Waiting for the next second (rather than
    // post-dating) keeps every Time in the past, so `time=now` finds the newest fileset.
    let newest = load_all(target).first().map(|f| f.time.timestamp());
    let mut t = Utc::now().timestamp();
    while newest.is_some_and(|n| t <= n) {
        let wait = 1_000_000_000u32.saturating_sub(Utc::now().timestamp_subsec_nanos());
        std::thread::sleep(std::time::Duration::from_nanos(
            u64::from(wait).max(1_000_000),
        ));
        t = Utc::now().timestamp();
    }
    let time = Utc
        .timestamp_opt(t, 0)
        .single()
        .ok_or("clock out of range")?;
    let dir = target.join(format!("{PREFIX}{t}"));
    let blobs = dir.join("blobs");
    fs::create_dir_all(&blobs).map_err(|e| format!("Cannot create {}: {e}", blobs.display()))?;
    for (n, (src, path)) in files.into_iter().enumerate() {
        let blob = format!("{n:06}");
        let size =
            fs::copy(&src, blobs.join(&blob)).map_err(|e| format!("Failed to read {path}: {e}"))?;
        entries.push(Entry {
            path,
            size: size as i64,
            blob: Some(blob),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = json!({
        "Time": t,
        "TimeString": format_time(time),
        "Sources": roots,
        "Entries": entries.iter().map(|e| json!({"Path": e.path, "Size": e.size, "Blob": e.blob})).collect::<Vec<_>>(),
    });
    fs::write(dir.join("manifest.json"), manifest.to_string())
        .map_err(|e| format!("Cannot write the manifest: {e}"))?;
    Ok(Fileset {
        dir,
        time,
        sources: roots,
        entries,
    })
}

fn walk(
    dir: &Path,
    path: &str,
    entries: &mut Vec<Entry>,
    files: &mut Vec<(PathBuf, String)>,
) -> io::Result<()> {
    entries.push(Entry {
        path: path.to_string(),
        size: -1,
        blob: None,
    });
    let mut children: Vec<_> = fs::read_dir(dir)?.filter_map(Result::ok).collect();
    children.sort_by_key(|d| d.file_name());
    for child in children {
        let name = child.file_name().to_string_lossy().into_owned();
        let ft = child.file_type()?;
        // Symlinks are not followed (Duplicati's default --symlink-policy=store keeps the link,
        // which the stand-in does not model).
        if ft.is_dir() {
            walk(&child.path(), &format!("{path}{name}/"), entries, files)?;
        } else if ft.is_file() {
            files.push((child.path(), format!("{path}{name}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        assert_eq!(
            target_dir("file:///backups/e2e/"),
            Ok(PathBuf::from("/backups/e2e/"))
        );
        assert_eq!(
            target_dir("file:///b/x?auth-username=u"),
            Ok(PathBuf::from("/b/x"))
        );
        assert!(target_dir("s3://bucket").is_err());
    }

    #[test]
    fn write_and_reload_with_distinct_times() {
        let src = std::env::temp_dir().join(format!("standin-fs-src-{}", std::process::id()));
        let dst = std::env::temp_dir().join(format!("standin-fs-dst-{}", std::process::id()));
        let _ = fs::remove_dir_all(&src);
        let _ = fs::remove_dir_all(&dst);
        fs::create_dir_all(src.join("sub dir")).unwrap_or_default();
        fs::write(src.join("sub dir").join("a+b&c.txt"), b"bytes").unwrap_or_default();
        let sources = [format!("{}/", src.display())];
        let a = write(&dst, &sources).map(|f| f.time);
        let b = write(&dst, &sources).map(|f| f.time);
        assert!(a.is_ok() && b.is_ok() && a != b);
        let all = load_all(&dst);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].file_count(), 1);
        assert_eq!(all[0].file_sizes(), 5);
        assert!(all[0]
            .entries
            .iter()
            .any(|e| e.path.ends_with("/sub dir/a+b&c.txt")));
        let _ = fs::remove_dir_all(&src);
        let _ = fs::remove_dir_all(&dst);
    }
}
