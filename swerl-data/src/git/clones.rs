//! Finding the local clone of a repository in a directory of clones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Maps `owner/name` (lower-cased) to the path of a local clone, bare or not.
///
/// Recognised layouts under the root directory: `owner/name`, `owner/name.git`, `owner__name`,
/// `owner__name.git`, `owner+name` and `owner+name/repo` (the layout of some mirroring tools).
/// Any other repository found at depth one or two is indexed by the `owner/name` of its
/// `origin` remote URL.
#[derive(Debug, Clone, Default)]
pub struct CloneIndex {
    by_name: BTreeMap<String, (String, PathBuf)>,
}

fn is_repo(p: &Path) -> bool {
    p.join("HEAD").is_file() && p.join("objects").is_dir() || p.join(".git").exists()
}

fn name_from_url(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = url.rsplit(['/', ':']);
    let name = parts.next()?;
    let owner = parts.next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

impl CloneIndex {
    /// Indexes the clones under `root`.
    pub fn scan(root: &Path) -> Result<Self> {
        let mut index = CloneIndex::default();
        let mut top: Vec<PathBuf> = fs_err::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        top.sort();
        for dir in top {
            let Some(fname) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let stem = fname.trim_end_matches(".git");
            if is_repo(&dir) {
                let name = if let Some((o, n)) = stem.split_once("__") {
                    Some(format!("{o}/{n}"))
                } else if let Some((o, n)) = stem.split_once('+') {
                    Some(format!("{o}/{n}"))
                } else {
                    origin_name(&dir)
                };
                if let Some(name) = name {
                    index.insert(name, dir);
                }
                continue;
            }
            if let Some((o, n)) = stem.split_once('+')
                && is_repo(&dir.join("repo"))
            {
                index.insert(format!("{o}/{n}"), dir.join("repo"));
                continue;
            }
            // owner/name layout.
            let mut inner: Vec<PathBuf> = fs_err::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir() && is_repo(p))
                .collect();
            inner.sort();
            for repo in inner {
                if let Some(n) = repo.file_name().and_then(|n| n.to_str()) {
                    index.insert(format!("{stem}/{}", n.trim_end_matches(".git")), repo.clone());
                }
            }
        }
        Ok(index)
    }

    /// Adds one clone under a name.
    pub fn insert(&mut self, name: String, path: PathBuf) {
        self.by_name.entry(name.to_ascii_lowercase()).or_insert((name, path));
    }

    /// The clone of `owner/name`, if any (case-insensitive).
    pub fn get(&self, repo: &str) -> Option<&Path> {
        self.by_name.get(&repo.to_ascii_lowercase()).map(|(_, p)| p.as_path())
    }

    /// All indexed repositories (`owner/name` as found), sorted by lower-cased name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.by_name.values().map(|(n, p)| (n.as_str(), p.as_path()))
    }

    /// Number of clones.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no clone was found.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn origin_name(dir: &Path) -> Option<String> {
    let repo = git2::Repository::open(dir).ok()?;
    let remote = repo.find_remote("origin").ok()?;
    name_from_url(remote.url()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(name_from_url("https://github.com/o/r.git").as_deref(), Some("o/r"));
        assert_eq!(name_from_url("git@github.com:o/r").as_deref(), Some("o/r"));
    }

    #[test]
    fn layouts() -> anyhow::Result<()> {
        let d = tempfile::tempdir()?;
        git2::Repository::init_bare(d.path().join("a__b.git"))?;
        git2::Repository::init(d.path().join("c").join("d"))?;
        git2::Repository::init_bare(d.path().join("e+f").join("repo"))?;
        let idx = CloneIndex::scan(d.path())?;
        assert_eq!(idx.len(), 3);
        assert!(idx.get("A/B").is_some() && idx.get("c/d").is_some() && idx.get("e/f").is_some());
        Ok(())
    }
}
