//! Fetching model files from the Hugging Face Hub, with the cache layout shared with Python's
//! `huggingface_hub` (`$HF_HUB_CACHE` or `$HF_HOME/hub`,
//! `models--{org}--{name}/refs/{branch}` and `.../snapshots/{commit}/...`) and offline mode
//! (`HF_HUB_OFFLINE=1`: files come from the cache alone).
//!
//! With the `hub` feature (default) files are resolved and downloaded by the [`hf_hub`] crate.
//! Without it the cache is read directly (same layout) and nothing is downloaded, which spares
//! the HTTP/TLS dependency tree.

use std::path::{Path, PathBuf};

#[cfg(feature = "hub")]
use hf_hub::{HFClientBuilder, HFClientSync, HFError, HFRepositorySync, RepoTypeModel};

use crate::error::{Error, Result};

/// How to reach the Hub.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubOptions {
    /// Cache directory; default: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub` (as Python's `huggingface_hub`).
    pub cache_dir: Option<PathBuf>,
    /// Use only cached files; default: the `HF_HUB_OFFLINE` environment variable.
    pub offline: Option<bool>,
    /// Branch, tag or commit; default `main`.
    pub revision: Option<String>,
}

impl HubOptions {
    /// Whether to stay offline (explicit setting, else `HF_HUB_OFFLINE` is `1`/`true`/`yes`/`on`).
    pub fn is_offline(&self) -> bool {
        self.offline.unwrap_or_else(|| {
            std::env::var("HF_HUB_OFFLINE")
                .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        })
    }
}

/// Whether `spec` looks like a Hub model id (`name` or `org/name`, no path syntax).
pub fn looks_like_repo_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && !p.starts_with('-')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(parts.len(), 1 | 2) && parts.iter().all(|p| ok(p)) && !spec.ends_with(".gguf")
}

/// The cache directory as `huggingface_hub` resolves it: `HF_HUB_CACHE`, else `$HF_HOME/hub`,
/// else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// One model repository on the Hub.
pub struct HubRepo {
    id: String,
    offline: bool,
    revision: Option<String>,
    cache_dir: PathBuf,
    #[cfg(feature = "hub")]
    repo: HFRepositorySync<RepoTypeModel>,
}

impl std::fmt::Debug for HubRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubRepo")
            .field("id", &self.id)
            .field("offline", &self.offline)
            .field("revision", &self.revision)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl HubRepo {
    /// A handle on repository `id` (`org/name`).
    pub fn new(id: &str, opts: &HubOptions) -> Result<Self> {
        let cache_dir = opts.cache_dir.clone().unwrap_or_else(default_cache_dir);
        #[cfg(feature = "hub")]
        let repo = {
            let client: HFClientSync =
                HFClientBuilder::new().cache_dir(&cache_dir).build_sync().map_err(|e| Error::Hub {
                    repo: id.to_string(),
                    file: String::new(),
                    message: e.to_string(),
                })?;
            let (owner, name) = hf_hub::split_id(id);
            client.model(owner, name)
        };
        Ok(Self {
            id: id.to_string(),
            offline: opts.is_offline(),
            revision: opts.revision.clone(),
            cache_dir,
            #[cfg(feature = "hub")]
            repo,
        })
    }

    /// The repository id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The local path of `file` (downloaded into the cache unless offline).
    pub fn get(&self, file: &str) -> Result<PathBuf> {
        self.fetch(file)?.ok_or_else(|| Error::Hub {
            repo: self.id.clone(),
            file: file.to_string(),
            message: if self.offline {
                "not in the local cache (offline mode)".into()
            } else if cfg!(feature = "hub") {
                "the repository has no such file".into()
            } else {
                "not in the local cache, and this build cannot download (no `hub` feature)".into()
            },
        })
    }

    /// Like [`Self::get`], but `None` when the file does not exist (or is not cached offline).
    pub fn get_optional(&self, file: &str) -> Result<Option<PathBuf>> {
        self.fetch(file)
    }

    #[cfg(feature = "hub")]
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>> {
        let result = self
            .repo
            .download_file()
            .filename(file)
            .maybe_revision(self.revision.clone())
            .local_files_only(self.offline)
            .send();
        match result {
            Ok(p) => Ok(Some(p)),
            Err(HFError::EntryNotFound { .. } | HFError::LocalEntryNotFound { .. }) => Ok(None),
            Err(e) => {
                Err(Error::Hub { repo: self.id.clone(), file: file.to_string(), message: e.to_string() })
            }
        }
    }

    #[cfg(not(feature = "hub"))]
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>> {
        Ok(cached_file(&self.cache_dir, &self.id, self.revision.as_deref().unwrap_or("main"), file))
    }
}

/// `file` of `repo` at `revision` (branch, tag or commit) in a Hub cache, if cached.
pub fn cached_file(cache_dir: &Path, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
    let folder = cache_dir.join(format!("models--{}", repo.replace('/', "--")));
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        std::fs::read_to_string(folder.join("refs").join(revision)).ok()?.trim().to_string()
    };
    let path = folder.join("snapshots").join(commit).join(file);
    path.is_file().then_some(path)
}

/// The directory holding a file fetched by [`HubRepo::get`] (the snapshot directory).
pub(crate) fn parent_dir(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_repo_ids() {
        assert!(looks_like_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(looks_like_repo_id("gpt2"));
        assert!(!looks_like_repo_id("./models/x"));
        assert!(!looks_like_repo_id("/abs/path"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("model.gguf"));
    }

    #[test]
    fn reads_the_python_cache_layout() {
        let dir = tempfile::tempdir().unwrap();
        let commit = "a".repeat(40);
        let folder = dir.path().join("models--org--name");
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::create_dir_all(folder.join("snapshots").join(&commit)).unwrap();
        std::fs::write(folder.join("refs/main"), format!("{commit}\n")).unwrap();
        std::fs::write(folder.join("snapshots").join(&commit).join("config.json"), "{}").unwrap();
        let found = cached_file(dir.path(), "org/name", "main", "config.json").unwrap();
        assert!(found.ends_with(format!("{commit}/config.json")));
        assert!(cached_file(dir.path(), "org/name", &commit, "config.json").is_some());
        assert!(cached_file(dir.path(), "org/name", "dev", "config.json").is_none());
        assert!(cached_file(dir.path(), "org/name", "main", "model.safetensors").is_none());
        // The loader goes through the same layout offline.
        let repo = HubRepo::new(
            "org/name",
            &HubOptions { cache_dir: Some(dir.path().to_path_buf()), offline: Some(true), revision: None },
        )
        .unwrap();
        assert_eq!(repo.get("config.json").unwrap(), found);
        assert!(repo.get_optional("tokenizer.json").unwrap().is_none());
        let err = repo.get("tokenizer.json").unwrap_err().to_string();
        assert!(err.contains("offline") && err.contains("org/name"), "{err}");
    }
}
