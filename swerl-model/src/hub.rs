//! Fetching model files from the Hugging Face Hub through [`hf_hub`], with its cache layout
//! (`$HF_HUB_CACHE` or `$HF_HOME/hub`, `models--{org}--{name}/snapshots/{rev}/...`) shared with
//! Python, and offline mode (`HF_HUB_OFFLINE=1`: files come from the cache alone).

use std::path::{Path, PathBuf};

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
            std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
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
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(parts.len(), 1 | 2) && parts.iter().all(|p| ok(p)) && !spec.ends_with(".gguf")
}

/// One model repository on the Hub.
pub struct HubRepo {
    id: String,
    repo: HFRepositorySync<RepoTypeModel>,
    offline: bool,
    revision: Option<String>,
}

impl std::fmt::Debug for HubRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubRepo")
            .field("id", &self.id)
            .field("offline", &self.offline)
            .field("revision", &self.revision)
            .finish()
    }
}

impl HubRepo {
    /// A handle on repository `id` (`org/name`).
    pub fn new(id: &str, opts: &HubOptions) -> Result<Self> {
        let mut builder = HFClientBuilder::new();
        if let Some(dir) = &opts.cache_dir {
            builder = builder.cache_dir(dir);
        }
        let client: HFClientSync = builder.build_sync().map_err(|e| Error::Hub {
            repo: id.to_string(),
            file: String::new(),
            message: e.to_string(),
        })?;
        let (owner, name) = hf_hub::split_id(id);
        Ok(Self {
            id: id.to_string(),
            repo: client.model(owner, name),
            offline: opts.is_offline(),
            revision: opts.revision.clone(),
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
            } else {
                "the repository has no such file".into()
            },
        })
    }

    /// Like [`Self::get`], but `None` when the file does not exist (or is not cached offline).
    pub fn get_optional(&self, file: &str) -> Result<Option<PathBuf>> {
        self.fetch(file)
    }

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
            Err(e) => Err(Error::Hub {
                repo: self.id.clone(),
                file: file.to_string(),
                message: e.to_string(),
            }),
        }
    }
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
}
