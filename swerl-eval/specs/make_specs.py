"""Writes python.json, the spec table swerl-eval builds environments and eval scripts from.

The facts (interpreter version, packages and pins, install and test commands per repository and
version) are SWE-bench's (MIT License), read from pip's `swebench==4.1.0`:

    python -m venv /tmp/swb4 && /tmp/swb4/bin/pip install swebench==4.1.0
    /tmp/swb4/bin/python make_specs.py

Only the twelve repositories of SWE-bench Lite and Verified are kept.
"""

import json
from pathlib import Path

from swebench.harness.constants import (
    MAP_REPO_TO_ENV_YML_PATHS,
    MAP_REPO_TO_REQS_PATHS,
    MAP_REPO_VERSION_TO_SPECS,
    NON_TEST_EXTS,
)

REPOS = [
    "astropy/astropy", "django/django", "matplotlib/matplotlib", "mwaskom/seaborn",
    "pallets/flask", "psf/requests", "pydata/xarray", "pylint-dev/pylint",
    "pytest-dev/pytest", "scikit-learn/scikit-learn", "sphinx-doc/sphinx", "sympy/sympy",
]
KEYS = ["python", "packages", "pip_packages", "pre_install", "install", "test_cmd",
        "eval_commands", "no_use_env"]

table = {
    "non_test_exts": NON_TEST_EXTS,
    "requirements_paths": {r: MAP_REPO_TO_REQS_PATHS[r] for r in REPOS if r in MAP_REPO_TO_REQS_PATHS},
    "environment_yml_paths": {r: MAP_REPO_TO_ENV_YML_PATHS[r] for r in REPOS if r in MAP_REPO_TO_ENV_YML_PATHS},
    "specs": {
        repo: {
            version: {k: spec[k] for k in KEYS if k in spec}
            for version, spec in MAP_REPO_VERSION_TO_SPECS[repo].items()
        }
        for repo in REPOS
    },
}
out = Path(__file__).resolve().parent / "python.json"
out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
print(f"wrote {out}")
