//! A source tree with hostile names, and the listings Duplicati should give for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Context, Result};

/// Where the tree sits inside the Duplicati container.
pub const SOURCE_ROOT: &str = "/source/";

/// Relative path → content size. Every character a URL, a query, a JSON string or a shell treats
/// specially, `%2F` as plain text in a file and a folder name, non-ASCII, a newline, depth.
const FILES: &[(&str, usize)] = &[
    ("plain.txt", 12),
    ("with space.txt", 100),
    ("a+b.txt", 33),
    ("rock&roll.txt", 7),
    ("100%.txt", 5),
    ("50%25 literal.txt", 9),
    ("#hash #tag.txt", 21),
    ("user@host.txt", 4),
    ("a%2Fb.txt", 17),
    ("what?.txt", 3),
    ("k=v;x,y.txt", 8),
    ("quote'single\"double.txt", 6),
    ("new\nline.txt", 11),
    ("empty.bin", 0),
    ("one.bin", 1),
    ("café/naïve 日本語 🙂.txt", 64),
    ("sub dir/a+b.txt", 40),
    ("sub dir/nested & more/x y.txt", 15),
    ("enc%2Fslash dir/%2F.txt", 13),
    ("enc%2Fslash dir/inner%20name.txt", 10),
    ("@at dir/#1.txt", 2),
    ("deep/l1/l2/l3/l4/l5/l6/deep file.bin", 70_000),
];

pub struct Tree {
    /// Relative path → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Tree {
    pub fn hostile() -> Tree {
        let files = FILES
            .iter()
            .map(|(path, size)| ((*path).to_owned(), content(path, *size)))
            .collect();
        Tree { files }
    }

    pub fn write(&self, root: &Path) -> Result<()> {
        for (rel, bytes) in &self.files {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Every folder as Duplicati names it: `/source/`, `/source/sub dir/`, …
    pub fn folders(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::from([SOURCE_ROOT.to_owned()]);
        for rel in self.files.keys() {
            let mut prefix = String::from(SOURCE_ROOT);
            let parts: Vec<&str> = rel.split('/').collect();
            for dir in &parts[..parts.len() - 1] {
                prefix.push_str(dir);
                prefix.push('/');
                out.insert(prefix.clone());
            }
        }
        out
    }

    /// The direct children of `folder` (files, and folders with a trailing `/`).
    pub fn children(&self, folder: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let all_paths = self
            .files
            .keys()
            .map(|rel| format!("{SOURCE_ROOT}{rel}"))
            .chain(self.folders());
        for path in all_paths {
            let Some(rest) = path.strip_prefix(folder) else {
                continue;
            };
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if !rest.is_empty() && !rest.contains('/') {
                out.insert(path);
            }
        }
        out
    }

    /// Every file under `root`, relative path → bytes.
    pub fn read(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(root)
                        .map_err(|_| {
                            crate::Error::msg(format!(
                                "{} escaped {}",
                                path.display(),
                                root.display()
                            ))
                        })?
                        .to_string_lossy()
                        .into_owned();
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    out.insert(rel, bytes);
                }
            }
        }
        Ok(out)
    }

    /// Compares a restored tree with this one; the error lists every difference.
    pub fn compare(&self, restored: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let mut problems = Vec::new();
        for (rel, bytes) in &self.files {
            match restored.get(rel) {
                None => problems.push(format!("missing: {rel:?}")),
                Some(got) if got != bytes => problems.push(format!(
                    "differs: {rel:?} ({} bytes restored, {} in the source)",
                    got.len(),
                    bytes.len()
                )),
                Some(_) => {}
            }
        }
        for rel in restored.keys() {
            if !self.files.contains_key(rel) {
                problems.push(format!("unexpected: {rel:?}"));
            }
        }
        crate::ensure!(
            problems.is_empty(),
            "restored tree differs from the source:\n  {}",
            problems.join("\n  ")
        );
        Ok(())
    }
}

/// Deterministic bytes, different per path, covering all 256 byte values.
fn content(path: &str, size: usize) -> Vec<u8> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_children() {
        let t = Tree::hostile();
        let folders = t.folders();
        assert!(folders.contains("/source/"));
        assert!(folders.contains("/source/sub dir/nested & more/"));
        assert!(folders.contains("/source/deep/l1/l2/l3/l4/l5/l6/"));
        let root = t.children("/source/");
        assert!(root.contains("/source/sub dir/"));
        assert!(root.contains("/source/a%2Fb.txt"));
        assert!(!root.contains("/source/sub dir/a+b.txt"));
        let sub = t.children("/source/sub dir/");
        assert_eq!(
            sub,
            BTreeSet::from([
                "/source/sub dir/a+b.txt".to_owned(),
                "/source/sub dir/nested & more/".to_owned()
            ])
        );
    }
}
