//! Restore browsing: which entries of which fileset a `files` / `list-folder` request returns.
//! // Duplicati/WebserverCore/Endpoints/V1/Backup/BackupGet.cs (SearchFilesAsync),
//! // Duplicati/Library/Main/Operation/ListFilesHandler.cs, Endpoints/V2/BackupListing.cs

use chrono::{DateTime, FixedOffset};
use regex::Regex;
use serde_json::{json, Value};

use crate::fileset::{Entry, Fileset};
use crate::timeparse::format_time;

/// Duplicati filter strings. // Duplicati/Library/Utility/FilterExpression.cs
pub enum Filter {
    /// `@/path`: this exact path.
    Literal(String),
    /// `[regex]`: the whole path must match.
    Regex(Regex),
    /// `*` and `?` wildcards over the whole path; no wildcard means an exact path.
    Glob(String),
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, String> {
        if let Some(lit) = s.strip_prefix('@') {
            return Ok(Filter::Literal(lit.to_string()));
        }
        if s.len() >= 2 && s.starts_with('[') && s.ends_with(']') {
            let re = Regex::new(&format!("^(?:{})$", &s[1..s.len() - 1]))
                .map_err(|e| format!("Invalid regular expression {s}: {e}"))?;
            return Ok(Filter::Regex(re));
        }
        Ok(Filter::Glob(s.to_string()))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Filter::Literal(l) => l == path,
            Filter::Regex(r) => r.is_match(path),
            Filter::Glob(g) => glob(g.as_bytes(), path.as_bytes()),
        }
    }

    /// The folder a literal names, for `folder-contents`.
    fn folder(&self) -> Option<&str> {
        match self {
            Filter::Literal(l) | Filter::Glob(l) if !l.contains(['*', '?']) => Some(l),
            _ => None,
        }
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn parent(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    trimmed.rfind('/').map(|i| &path[..=i])
}

/// Newest fileset at or before `time` (Duplicati's `--time`), with its version number.
pub fn select(sets: &[Fileset], time: DateTime<FixedOffset>) -> Option<(usize, &Fileset)> {
    sets.iter()
        .enumerate()
        .find(|(_, f)| f.time.timestamp() <= time.timestamp())
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ListFlags {
    pub prefix_only: bool,
    pub folder_contents: bool,
}

/// Entries of one fileset for a filter and flags: roots for `prefix-only` (or folder-contents
/// without a folder), direct children for `folder-contents`, otherwise everything matching.
pub fn entries<'a>(f: &'a Fileset, filter: Option<&Filter>, flags: ListFlags) -> Vec<&'a Entry> {
    let folder = filter.and_then(Filter::folder);
    let mut out: Vec<&Entry> = if flags.prefix_only || (flags.folder_contents && folder.is_none()) {
        f.entries
            .iter()
            .filter(|e| f.sources.contains(&e.path))
            .collect()
    } else if flags.folder_contents {
        let folder = folder.unwrap_or("");
        f.entries
            .iter()
            .filter(|e| parent(&e.path) == Some(folder) && e.path != folder)
            .collect()
    } else {
        f.entries
            .iter()
            .filter(|e| filter.is_none_or(|flt| flt.matches(&e.path)))
            .collect()
    };
    // BackupGet.SearchFilesAsync: folders first, then by path.
    out.sort_by(|a, b| {
        b.is_dir()
            .cmp(&a.is_dir())
            .then_with(|| a.path.cmp(&b.path))
    });
    out
}

/// `{"Filesets":[…],"Files":[{"Path","Sizes"}]}` over the chosen filesets (one for a `time`,
/// all for `all-versions`); `Sizes` has one entry per fileset, -1 where absent or a folder.
pub fn files_response(
    chosen: &[(usize, &Fileset)],
    filter: Option<&Filter>,
    flags: ListFlags,
) -> Value {
    let mut paths: Vec<&Entry> = Vec::new();
    for (_, f) in chosen {
        for e in entries(f, filter, flags) {
            if !paths.iter().any(|p| p.path == e.path) {
                paths.push(e);
            }
        }
    }
    paths.sort_by(|a, b| {
        b.is_dir()
            .cmp(&a.is_dir())
            .then_with(|| a.path.cmp(&b.path))
    });
    let files: Vec<Value> = paths
        .iter()
        .map(|e| {
            let sizes: Vec<i64> = chosen
                .iter()
                .map(|(_, f)| {
                    f.entries
                        .iter()
                        .find(|x| x.path == e.path)
                        .map(|x| x.size)
                        .unwrap_or(-1)
                })
                .collect();
            json!({ "Path": e.path, "Sizes": sizes })
        })
        .collect();
    json!({
        "Filesets": chosen.iter().map(|(v, f)| f.summary(*v)).collect::<Vec<_>>(),
        "Files": files,
    })
}

/// POST /api/v2/backup/list-folder items. // Dto/V2/ListFolderContentResponseDto.cs
pub fn list_folder_items(f: &Fileset, folders: Option<&[String]>) -> Vec<Value> {
    let mut items = Vec::new();
    let flags = |folder_contents: bool| ListFlags {
        prefix_only: !folder_contents,
        folder_contents,
    };
    match folders {
        None => items.extend(entries(f, None, flags(false))),
        Some(list) => {
            for folder in list {
                let flt = Filter::Literal(folder.clone());
                items.extend(entries(f, Some(&flt), flags(true)));
            }
        }
    }
    items
        .into_iter()
        .map(|e| {
            json!({
                "Path": e.path,
                "Size": e.size.max(0),
                "IsDirectory": e.is_dir(),
                "IsSymlink": false,
                "LastModified": format_time(f.time),
                "Metadata": {},
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn fs() -> Fileset {
        let e = |p: &str, s: i64| Entry {
            path: p.into(),
            size: s,
            blob: None,
        };
        Fileset {
            dir: "/x".into(),
            time: Utc
                .with_ymd_and_hms(2026, 11, 26, 18, 0, 0)
                .single()
                .unwrap_or_default(),
            sources: vec!["/source/".into()],
            entries: vec![
                e("/source/", -1),
                e("/source/a b+c&d.txt", 3),
                e("/source/sub %2F dir/", -1),
                e("/source/sub %2F dir/report #1.txt", 5),
                e("/source/zz/", -1),
            ],
        }
    }

    fn paths(v: Vec<&Entry>) -> Vec<String> {
        v.into_iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn prefix_only_gives_roots() {
        let f = fs();
        let flags = ListFlags {
            prefix_only: true,
            folder_contents: false,
        };
        assert_eq!(paths(entries(&f, None, flags)), ["/source/"]);
    }

    #[test]
    fn folder_contents_gives_children_folders_first() {
        let f = fs();
        let flt = Filter::parse("@/source/").ok();
        let flags = ListFlags {
            prefix_only: false,
            folder_contents: true,
        };
        assert_eq!(
            paths(entries(&f, flt.as_ref(), flags)),
            ["/source/sub %2F dir/", "/source/zz/", "/source/a b+c&d.txt"]
        );
        let deep = Filter::parse("@/source/sub %2F dir/").ok();
        assert_eq!(
            paths(entries(&f, deep.as_ref(), flags)),
            ["/source/sub %2F dir/report #1.txt"]
        );
    }

    #[test]
    fn search_and_regex() {
        let f = fs();
        let flags = ListFlags::default();
        let flt = Filter::parse("*report*").ok();
        assert_eq!(
            paths(entries(&f, flt.as_ref(), flags)),
            ["/source/sub %2F dir/report #1.txt"]
        );
        let re = Filter::parse("[/source/sub %2F dir/.*]").ok();
        assert_eq!(
            paths(entries(&f, re.as_ref(), flags)),
            ["/source/sub %2F dir/", "/source/sub %2F dir/report #1.txt"]
        );
        let v = files_response(&[(0, &f)], flt.as_ref(), flags);
        assert_eq!(v["Files"][0]["Sizes"], json!([5]));
        assert_eq!(v["Filesets"][0]["Time"], json!("2026-11-26T18:00:00+00:00"));
    }

    #[test]
    fn time_selects_newest_at_or_before() {
        let mut older = fs();
        older.time = Utc
            .with_ymd_and_hms(2026, 11, 26, 17, 0, 0)
            .single()
            .unwrap_or_default();
        let sets = vec![fs(), older];
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap_or_default();
        assert_eq!(
            select(&sets, at("2026-11-26T18:30:00+00:00")).map(|x| x.0),
            Some(0)
        );
        assert_eq!(
            select(&sets, at("2026-11-26T19:30:00+02:00")).map(|x| x.0),
            Some(1)
        );
        assert_eq!(
            select(&sets, at("2026-11-26T16:00:00+00:00")).map(|x| x.0),
            None
        );
    }
}
