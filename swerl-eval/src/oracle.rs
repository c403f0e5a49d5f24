//! RL instances from SWE-bench records with whole files: the files the gold patch changes, read
//! at `base_commit` from the repository's clone, and the same files with the gold patch applied
//! by `git apply`. Answers scored against them yield patches that apply to the repository, so
//! the harness can grade them (the paper's oracle-files diagnostic with a resolved rate).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use swerl_reward::RlInstance;

use crate::checkout::{find_clone, git};
use crate::dataset::Instance;
use crate::directives::touched_paths;
use crate::error::{Error, Result};

/// The RL instance of `instance` with whole files: `code_context` holds every file the gold
/// patch touches as it is at `base_commit` (a file the patch creates is absent), and
/// `oracle_new_content` the same files after the patch (a deleted file is empty).
pub fn whole_file_instance(instance: &Instance, repos: &Path) -> Result<RlInstance> {
    let clone = find_clone(repos, &instance.repo)?;
    let paths: Vec<String> =
        touched_paths(&instance.patch).into_iter().filter(|p| p != "/dev/null").collect();
    if paths.is_empty() {
        return Err(Error::Config(format!("{}: the gold patch touches no file", instance.instance_id)));
    }
    let dir = tempfile::tempdir()?;
    let mut code_context = BTreeMap::new();
    for path in &paths {
        let spec = format!("{}:{path}", instance.base_commit);
        let exists = Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(["cat-file", "-e", &spec])
            .output()?
            .status
            .success();
        if !exists {
            continue;
        }
        let text = git(&clone, &["show", &spec], "read a file at base_commit")?;
        let file = dir.path().join(path);
        if let Some(parent) = file.parent() {
            fs_err::create_dir_all(parent)?;
        }
        fs_err::write(&file, &text)?;
        code_context.insert(path.clone(), text);
    }
    let patch_file = dir.path().join(".gold.diff");
    fs_err::write(&patch_file, &instance.patch)?;
    let out = Command::new("git")
        .current_dir(dir.path())
        .args(["apply", "--whitespace=nowarn", ".gold.diff"])
        .env("GIT_CEILING_DIRECTORIES", dir.path())
        .output()?;
    if !out.status.success() {
        return Err(Error::Command {
            step: format!("{}: apply the gold patch to the files at base_commit", instance.instance_id),
            command: "git apply".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let mut oracle_new_content = BTreeMap::new();
    for path in &paths {
        let file = dir.path().join(path);
        let text = if file.is_file() { fs_err::read_to_string(&file)? } else { String::new() };
        oracle_new_content.insert(path.clone(), text);
    }
    Ok(RlInstance {
        instance_id: instance.instance_id.clone(),
        problem_statement: instance.problem_statement.clone(),
        code_context,
        oracle_new_content,
    })
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::CalcRepo;

    #[test]
    fn whole_files_before_and_after_the_gold_patch() {
        let tmp = tempfile::tempdir().unwrap();
        let calc = CalcRepo::create(tmp.path()).unwrap();
        let record = calc.instance("calc-1").unwrap();
        let instance: Instance = serde_json::from_value(record).unwrap();
        let rl = whole_file_instance(&instance, tmp.path()).unwrap();
        let before = &rl.code_context["calc/__init__.py"];
        let after = &rl.oracle_new_content["calc/__init__.py"];
        assert_eq!(before, "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n");
        assert_eq!(after, &before.replacen("a - b", "a + b", 1));
        let mut bad = instance.clone();
        bad.patch = bad.patch.replace("return a - b", "return a * b");
        let e = whole_file_instance(&bad, tmp.path()).unwrap_err().to_string();
        assert!(e.contains("calc-1") && e.contains("git apply"), "{e}");
    }
}
