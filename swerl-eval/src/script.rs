//! Eval scripts: upstream's (generated from the spec table as swebench 4.1 does, or the dataset's
//! v5 `eval_script` column), translated from a conda image to a virtual environment.

use std::path::Path;

use crate::dataset::Instance;
use crate::directives::{modified_files, test_directives};
use crate::grading::{END_TEST_OUTPUT, START_TEST_OUTPUT, TEST_EXIT_CODE};
use crate::specs::Spec;

/// Upstream's heredoc delimiter for the test patch.
const HEREDOC: &str = "EOF_114329324912";
/// Where upstream's images keep the repository.
pub const UPSTREAM_REPO_DIR: &str = "/testbed";

/// The eval script swebench 4.1 generates (`make_eval_script_list_py`), for its conda image.
pub fn upstream_eval_script(instance: &Instance, spec: &Spec) -> String {
    let base = &instance.base_commit;
    let test_files = modified_files(&instance.test_patch);
    let reset = format!("git checkout {base} {}", test_files.join(" "));
    let mut test_cmd = vec![spec.test_cmd.clone()];
    test_cmd.extend(test_directives(&instance.repo, &instance.test_patch));
    let activate = ["source /opt/miniconda3/bin/activate", "conda activate testbed"];
    let mut lines: Vec<String> = vec!["#!/bin/bash".into(), "set -uxo pipefail".into()];
    lines.extend(activate.map(String::from));
    lines.push(format!("cd {UPSTREAM_REPO_DIR}"));
    lines.extend(spec.eval_commands.iter().cloned());
    lines.extend([
        format!("git config --global --add safe.directory {UPSTREAM_REPO_DIR}"),
        format!("cd {UPSTREAM_REPO_DIR}"),
        "git status".into(),
        "git show".into(),
        format!("git -c core.fileMode=false diff {base}"),
    ]);
    lines.extend(activate.map(String::from));
    lines.extend(spec.install.clone());
    lines.extend([
        reset.clone(),
        format!("git apply -v - <<'{HEREDOC}'\n{}\n{HEREDOC}", instance.test_patch),
        format!(": '{START_TEST_OUTPUT}'"),
        test_cmd.join(" "),
        format!(": '{END_TEST_OUTPUT}'"),
        reset,
    ]);
    lines.join("\n") + "\n"
}

/// The script that runs the spec's test command on `directives` in the repository as it stands
/// (no test patch: Agentless's regression run), for the same conda image as
/// [`upstream_eval_script`] (translate it with [`translate_for_venv`]): activation, the spec's
/// eval commands and install step, then the markers around the test command.
pub fn existing_tests_script(spec: &Spec, directives: &[String]) -> String {
    let activate = ["source /opt/miniconda3/bin/activate", "conda activate testbed"];
    let mut lines: Vec<String> = vec!["#!/bin/bash".into(), "set -uxo pipefail".into()];
    lines.extend(activate.map(String::from));
    lines.push(format!("cd {UPSTREAM_REPO_DIR}"));
    lines.extend(spec.eval_commands.iter().cloned());
    lines.extend(spec.install.clone());
    let mut test_cmd = vec![spec.test_cmd.clone()];
    test_cmd.extend(directives.iter().cloned());
    lines.extend([format!(": '{START_TEST_OUTPUT}'"), test_cmd.join(" "), format!(": '{END_TEST_OUTPUT}'")]);
    lines.join("\n") + "\n"
}

/// Where a translated script runs.
#[derive(Debug, Clone)]
pub struct VenvContext<'a> {
    /// The instance's virtual environment (its `bin/activate` is sourced).
    pub venv: &'a Path,
    /// The repository checkout that stands for `/testbed`.
    pub repo_dir: &'a Path,
    /// Site-packages directories (the instance venv's, then the shared environment's) given to
    /// `tox --current-env` runs through `PYTHONPATH`: tox-current-env runs a symlink to the venv's
    /// interpreter, which does not find its `pyvenv.cfg` and starts as the bare base interpreter.
    pub site_packages: Vec<String>,
}

/// Translates an upstream eval script for a virtual environment: activation of the venv instead
/// of conda, the checkout's path instead of `/testbed`, no `locale-gen` (the locale becomes
/// `C.UTF-8`), editable `pip install -e` lines kept from preparation (the install already points
/// at the checkout) and other `pip install` lines offline (`--no-index --no-deps
/// --no-build-isolation`: the sandbox has no network, the environment holds the dependencies). Heredoc bodies
/// (the test patch) are copied verbatim. With `record_exit_code` (swebench 5), the test command's
/// status is kept and echoed after the end marker, as upstream's `record_test_exit_code` does.
pub fn translate_for_venv(script: &str, ctx: &VenvContext<'_>, record_exit_code: bool) -> String {
    let venv = ctx.venv.display().to_string();
    let repo = ctx.repo_dir.display().to_string();
    let mut out: Vec<String> = Vec::new();
    let mut heredoc_end: Option<String> = None;
    let mut recorded = false;
    for line in script.split('\n') {
        if let Some(end) = &heredoc_end {
            if line == end {
                heredoc_end = None;
            }
            out.push(line.to_owned());
            continue;
        }
        if let Some(pos) = line.find("<<'") {
            let rest = &line[pos + 3..];
            heredoc_end = rest.split('\'').next().map(str::to_owned);
        }
        let trimmed = line.trim();
        if trimmed.starts_with("conda activate")
            || trimmed.contains("/etc/locale.gen")
            || trimmed == "locale-gen"
        {
            continue;
        }
        if trimmed == "source /opt/miniconda3/bin/activate" {
            out.push(format!("source '{venv}/bin/activate'"));
            continue;
        }
        if record_exit_code && !recorded && line.contains(END_TEST_OUTPUT) {
            out.push("SWEBENCH_TEST_EXIT_CODE=$?".into());
            out.push(line.to_owned());
            out.push(format!("echo \"{TEST_EXIT_CODE}: $SWEBENCH_TEST_EXIT_CODE\""));
            recorded = true;
            continue;
        }
        let mut l = line.replace(UPSTREAM_REPO_DIR, &repo).replace("en_US.UTF-8", "C.UTF-8");
        if l.trim_start().starts_with("tox --current-env") && !ctx.site_packages.is_empty() {
            l = format!("PYTHONPATH='{}' {}", ctx.site_packages.join(":"), l.trim_start());
        }
        if let Some(pos) = l.find("pip install ") {
            if l.contains(" -e ") || l.contains("--editable") {
                // The editable install made at preparation already points at this checkout;
                // redoing it offline would need --no-build-isolation, which swaps a project's
                // pinned build backend for the environment's (a different kind of install).
                out.push(format!(
                    ": 'editable install kept from preparation: {}'",
                    l.trim().replace('\'', "")
                ));
                continue;
            }
            l.insert_str(pos + "pip install ".len(), "--no-index --no-deps --no-build-isolation ");
        }
        out.push(l);
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_keeps_heredocs_and_records_exit_code() {
        let script = "#!/bin/bash\nset -uxo pipefail\nsource /opt/miniconda3/bin/activate\nconda activate testbed\ncd /testbed\nsed -i '/en_US.UTF-8/s/^# //g' /etc/locale.gen && locale-gen\nexport LC_ALL=en_US.UTF-8\npython -m pip install -e .\ngit apply -v - <<'EOF_1'\n+cd /testbed\nEOF_1\n: '>>>>> Start Test Output'\npytest -rA\n: '>>>>> End Test Output'\n";
        let ctx = VenvContext {
            venv: Path::new("/v"),
            repo_dir: Path::new("/w"),
            site_packages: vec!["/s".into()],
        };
        let t = translate_for_venv(script, &ctx, true);
        assert!(t.contains("source '/v/bin/activate'\ncd /w\nexport LC_ALL=C.UTF-8\n"));
        assert!(t.contains(": 'editable install kept from preparation: python -m pip install -e .'"));
        let plain = translate_for_venv("python -m pip install .\n", &ctx, false);
        assert_eq!(plain, "python -m pip install --no-index --no-deps --no-build-isolation .\n");
        assert!(t.contains("+cd /testbed\nEOF_1"));
        assert!(t.contains("SWEBENCH_TEST_EXIT_CODE=$?\n: '>>>>> End Test Output'\necho \">>>>> Test Exit Code: $SWEBENCH_TEST_EXIT_CODE\""));
        assert!(!t.contains("conda") && !t.contains("locale-gen"));
        let tox = translate_for_venv("tox --current-env -epy39 -v -- tests/t.py", &ctx, false);
        assert_eq!(tox, "PYTHONPATH='/s' tox --current-env -epy39 -v -- tests/t.py");
    }
}
