#!/usr/bin/env python3
"""Generates swerl-reward's golden vectors from CPython's difflib and the Python `unidiff` package.

    python3 swerl-reward/tests/golden/make_golden.py [--swe-rl PATH] [--data DIR]

Writes, next to this script (gzipped JSON lines, deterministic for a given Python and data):
  reward_cases.jsonl.gz   one task per line: code_context, oracle_new_content and completions,
                          each with the expected reward, error kind and per-file similarities
  matcher_cases.jsonl.gz  SequenceMatcher results (blocks, opcodes, grouped opcodes, ratios)
  text_cases.jsonl.gz     str.splitlines / str.strip and per-file change texts
  unidiff_cases.jsonl.gz  unified-diff rewards under unidiff 1.0.1 and 0.7.5

Inputs are realistic code edits built from the real SWE-bench Lite patches in ../shared/data
(--data) plus synthetic cases for every rule of spec/reward.md. Expected values come from
reference.py (this folder), a direct implementation of the spec on the standard library. With
--swe-rl PATH (a checkout of facebookresearch/swe-rl) every value is also checked against the
paper's own reward.py. The two unidiff releases are pip-installed into a cache folder.
"""

import argparse
import gzip
import importlib
import json
import os
import random
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

UNIDIFF_RELEASES = {"v1": "1.0.1", "v0_7": "0.7.5"}
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "swerl", "unidiff")


def load_unidiff(version):
    """Imports a given unidiff release from a private pip --target folder."""
    target = os.path.join(CACHE, version)
    if not os.path.isdir(os.path.join(target, "unidiff")):
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, f"unidiff=={version}"]
        )
    for name in [m for m in sys.modules if m == "unidiff" or m.startswith("unidiff.")]:
        del sys.modules[name]
    sys.path.insert(0, target)
    try:
        module = importlib.import_module("unidiff")
    finally:
        sys.path.remove(target)
    assert module.__file__.startswith(target), module.__file__
    return module


# --------------------------------------------------------------------------------------------
# Parsing the real SWE-bench patches into per-file hunks.

HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")


def parse_git_diff(patch):
    """-> {path: [(old_lines, new_lines)]} for the text files of a git diff."""
    files, path, hunk = {}, None, None
    for line in patch.split("\n"):
        if line.startswith("diff --git "):
            path, hunk = None, None
        elif line.startswith("+++ "):
            name = line[4:]
            path = name[2:] if name.startswith("b/") else name
            if path == "/dev/null":
                path = None
            else:
                files.setdefault(path, [])
        elif HUNK.match(line) and path is not None:
            hunk = ([], [])
            files[path].append(hunk)
        elif hunk is not None and line[:1] in (" ", "-", "+"):
            if line[0] in " -":
                hunk[0].append(line[1:])
            if line[0] in " +":
                hunk[1].append(line[1:])
    return {p: h for p, h in files.items() if h}


def rebuild_files(hunks, rng):
    """Old and new partial files: the hunks' two sides, separated by distinct filler code."""
    old, new = [], []
    for k, (o, n) in enumerate(hunks):
        if k:
            filler = [f"# --- lines omitted ({k}) ---", "", f"def _omitted_{k}_{rng.randrange(10**6)}():", "    pass", ""]
            old += filler
            new += filler
        old += o
        new += n
    return "\n".join(old) + "\n", "\n".join(new) + "\n"


# --------------------------------------------------------------------------------------------
# Completions.

THOUGHTS = [
    "The issue says the function mishandles this case; fix the condition.",
    "Looking at the traceback, the bug is in the helper. Patch it.",
    "We need to handle the empty input.",
    "Let me localize: the code path in question is below.\nI'll edit it.",
]
FENCES = ["```python", "```", "```diff", "```py", "``` python"]


def block(path, search, replace, fence="```python"):
    return f"{fence}\n### {path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```"


def completion(blocks, rng, thought=None, order="normal", between="\n\n"):
    thought = rng.choice(THOUGHTS) if thought is None else thought
    answer = between.join(blocks)
    think = f"<think>\n{thought}\n</think>"
    solution = f"<solution>\n{answer}\n</solution>"
    if order == "reversed":
        return f"{solution}\n{think}"
    return f"{think}\n{solution}"


def trim_context(o, n):
    """The changed core of a hunk: common leading and trailing lines removed."""
    i = 0
    while i < min(len(o), len(n)) and o[i] == n[i]:
        i += 1
    j = 0
    while j < min(len(o), len(n)) - i and o[len(o) - 1 - j] == n[len(n) - 1 - j]:
        j += 1
    return o[i : len(o) - j], n[i : len(n) - j], o[:i], o[len(o) - j :]


def mutate(text, rng, rate=0.05):
    out = []
    for ch in text:
        r = rng.random()
        if r < rate / 3:
            continue
        if r < 2 * rate / 3:
            out.append(rng.choice("abcxyz_ ()0123"))
            continue
        out.append(ch)
        if r < rate:
            out.append(rng.choice("etaoin "))
    return "".join(out)


def realistic_blocks(files, rng, mode):
    """SEARCH/REPLACE blocks reproducing (part of) the oracle edit, in several styles."""
    blocks = []
    for path, hunks in files.items():
        chosen = hunks if mode != "partial" else hunks[:1]
        for o, n in chosen:
            if mode == "minimal":
                core_o, core_n, before, after = trim_context(o, n)
                # keep one line of context so SEARCH is rarely empty or ambiguous
                core_o = before[-1:] + core_o + after[:1]
                core_n = before[-1:] + core_n + after[:1]
                o, n = core_o, core_n
            search, replace = "\n".join(o), "\n".join(n)
            if mode == "mutated":
                replace = mutate(replace, rng)
            if mode == "unindented":
                search = search.lstrip()
            blocks.append(block(path, search, replace, rng.choice(FENCES)))
    return blocks


def swebench_tasks(data_dir, rng):
    instances = []
    for name in ("lite-test.json", "lite-dev.json"):
        with open(os.path.join(data_dir, "swebench", name)) as f:
            instances += json.load(f)
    tasks = []
    for inst in instances:
        files = parse_git_diff(inst["patch"])
        if not files:
            continue
        code_context, oracle = {}, {}
        for path, hunks in files.items():
            code_context[path], oracle[path] = rebuild_files(hunks, rng)
        test_files = parse_git_diff(inst["test_patch"])
        for path, hunks in list(test_files.items())[:1]:
            code_context[path] = rebuild_files(hunks, rng)[0]
        outs = []
        for mode in ("exact", "minimal", "partial", "mutated", "unindented"):
            blocks = realistic_blocks(files, rng, mode)
            if blocks:
                outs.append((mode, completion(blocks, rng)))
        exact = realistic_blocks(files, rng, "exact")
        if exact:
            outs.append(("reversed_tags", completion(exact, rng, order="reversed")))
            outs.append(("crlf", completion(exact, rng).replace("\n", "\r\n")))
            outs.append(("extra_new_file", completion(exact + [block("NOTES.md", "", "Fixed " + inst["instance_id"])], rng)))
            outs.append(("duplicate_think", "<think>x</think>" + completion(exact, rng)))
            outs.append(("empty_thought", completion(exact, rng, thought=" \t ")))
            outs.append(("text_between_blocks", completion(exact, rng, between="\n\nAnd another edit:\n\n")))
            first_path = next(iter(files))
            outs.append(("trailing_space_path", completion([block(first_path + " ", "", "x = 1")] + exact, rng)))
        # an edit of the test file the oracle does not change
        for path in list(test_files)[:1]:
            lines = [l for l in code_context[path].split("\n") if l.strip()]
            if lines:
                line = rng.choice(lines)
                outs.append(("edits_unchanged_file", completion(exact + [block(path, line, line + "  # changed")], rng)))
        # replace-all: a SEARCH line occurring several times in the original file
        for path, text in code_context.items():
            lines = text.split("\n")
            repeated = sorted({l for l in lines if l.strip() and lines.count(l) > 1})
            if repeated:
                line = rng.choice(repeated)
                outs.append(("replace_all", completion([block(path, line, line + "  # every one")], rng)))
                break
        # identical SEARCH and REPLACE after a good block
        path, hunks = next(iter(files.items()))
        s = "\n".join(hunks[0][0])
        if s:
            outs.append(("identical_edit", completion(exact + [block(path, s, s)], rng)))
        # an empty SEARCH on an existing file inserts REPLACE before every line
        outs.append(("empty_search_existing", completion([block(path, "", "# header")], rng)))
        tasks.append({"id": inst["instance_id"], "code_context": code_context, "oracle_new_content": oracle, "outputs": outs})
    return tasks


# --------------------------------------------------------------------------------------------
# Synthetic tasks for each rule.

POPULAR = ["", "    pass", "}", "        return None", "    }", "end", "# ----"]
IDENTS = ["value", "count", "items", "result", "node", "parser", "config", "path", "x", "y"]


def code_line(rng, unicode=False):
    a, b = rng.choice(IDENTS), rng.choice(IDENTS)
    line = rng.choice(
        [f"    {a} = {b} + {rng.randrange(100)}", f"    if {a} is None:", f"def {a}_{rng.randrange(50)}({b}):",
         f"        return {a}.{b}()", f"    {a}.append({b})", f"    # {a} and {b}"]
    )
    if unicode:
        line += rng.choice(["  # é", "  # 中文", "  # 😀", "  # 𝔘𝔫𝔦", "  # ß→SS", "  # ∑"])
    return line


def long_file(rng, n, popular_rate):
    return [rng.choice(POPULAR) if rng.random() < popular_rate else code_line(rng) for _ in range(n)]


def edit_lines(lines, rng, k):
    """k random line-level edits; returns the new list and the (search, replace) blocks."""
    new = list(lines)
    blocks = []
    for _ in range(k):
        i = rng.randrange(len(new))
        j = min(len(new), i + rng.randint(1, 3))
        old_chunk = new[i:j]
        repl = [code_line(rng) for _ in range(rng.randint(0, 3))]
        new[i:j] = repl
        blocks.append(("\n".join(old_chunk), "\n".join(repl)))
    return new, blocks


def synthetic_tasks(rng):
    tasks = []
    # Files of 200+ lines where autojunk's popular lines change the hunks.
    for t in range(120):
        n = rng.randint(150, 900)
        lines = long_file(rng, n, rng.choice([0.1, 0.3, 0.6]))
        new, _ = edit_lines(lines, rng, rng.randint(1, 8))
        pred, blocks = edit_lines(lines, rng, rng.randint(1, 6))
        ctx = {"big.py": "\n".join(lines) + "\n"}
        oracle = {"big.py": "\n".join(new) + "\n"}
        outs = [("oracle_as_whole_file", completion([block("big.py", "\n".join(lines), "\n".join(new))], rng))]
        outs.append(("other_edit_as_whole_file", completion([block("big.py", "\n".join(lines), "\n".join(pred))], rng)))
        # sequential blocks on the running text
        seq, seq_blocks = edit_lines(lines, rng, 3)
        outs.append(("sequential_blocks", completion([block("big.py", s, r) for s, r in seq_blocks], rng)))
        tasks.append({"id": f"long-{t}", "code_context": ctx, "oracle_new_content": oracle, "outputs": outs})
    # Every str.splitlines boundary, in files and in edits.
    seps = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1f", "\t"]
    for t in range(150):
        parts = [code_line(rng, unicode=rng.random() < 0.3) for _ in range(rng.randint(3, 12))]
        text = "".join(p + rng.choice(seps) for p in parts)
        i = rng.randrange(len(parts))
        new_text = text.replace(parts[i], parts[i] + " + 1", 1)
        if rng.random() < 0.3:
            new_text = new_text.rstrip("\n") if rng.random() < 0.5 else new_text + "\n"
        ctx = {"s.py": "\n" + text if rng.random() < 0.2 else text}
        oracle = {"s.py": new_text}
        outs = [
            ("splitlines_exact", completion([block("s.py", parts[i], parts[i] + " + 1")], rng)),
            ("splitlines_other", completion([block("s.py", parts[i], parts[i] + " - 1")], rng)),
            ("trailing_newline_only", completion([block("s.py", parts[-1], parts[-1] + "\n")], rng)),
        ]
        tasks.append({"id": f"splitlines-{t}", "code_context": ctx, "oracle_new_content": oracle, "outputs": outs})
    # Non-ASCII and astral characters in code and paths; new files; multi-file means.
    for t in range(150):
        paths = rng.sample(["src/ü.py", "lib/😀.rs", "a b/c.py", "x.py", "pkg/模块.py", "é/ç.txt"], 3)
        ctx = {p: "\n".join(code_line(rng, unicode=True) for _ in range(rng.randint(2, 30))) + "\n" for p in paths[:2]}
        oracle = {}
        for p in paths[: rng.randint(1, 3)]:
            base = ctx.get(p, "")
            oracle[p] = base.replace("=", "==", 1) + code_line(rng, unicode=True) + "\n"
        blocks = []
        for p in paths:
            base = ctx.get(p)
            if base is None:
                blocks.append(block(p, "", code_line(rng, unicode=True)))
            else:
                line = rng.choice(base.split("\n")[:-1])
                blocks.append(block(p, line, line.replace("=", "==", 1) + "  # 🐍"))
        outs = [("unicode_multi_file", completion(blocks, rng)), ("unicode_one_file", completion(blocks[:1], rng))]
        if rng.random() < 0.5:
            outs.append(("unicode_thought", completion(blocks, rng, thought="\u3000思考\u2003")))
        tasks.append({"id": f"unicode-{t}", "code_context": ctx, "oracle_new_content": oracle, "outputs": outs})
    # Format rules.
    ctx = {"a.py": "def f():\n    return 1\n", "b.py": "x = 1\ny = 2\nx = 1\n"}
    oracle = {"a.py": "def f():\n    return 2\n"}
    good = block("a.py", "    return 1", "    return 2")
    fmt = [
        ("exact", completion([good], rng)),
        ("no_tags", "just text"),
        ("missing_solution_end", "<think>a</think><solution>" + good),
        ("two_solutions", completion([good], rng) + "<solution></solution>"),
        ("tags_inside_out", "</solution>" + good + "<solution></think>t<think>"),
        ("empty_solution", "<think>t</think><solution></solution>"),
        ("block_without_final_newline", "<think>t</think><solution>" + good[:-4] + "```</solution>"),
        ("nested_fence_tag", completion([good.replace("```python", "````")], rng)),
        ("separator_in_code", completion([block("b.py", "x = 1", "x = 1\n=======\ny = 3")], rng)),
        ("crlf_only_in_block", completion([good.replace("\n", "\r\n")], rng)),
        ("empty_search_new_file", completion([block("new.py", "", "print('hi')")], rng)),
        ("non_empty_search_new_file", completion([block("new.py", "x", "y")], rng)),
        ("replace_all_twice", completion([block("b.py", "x = 1", "x = 3")], rng)),
        ("overlapping_occurrences", completion([block("b.py", "x = 1\ny = 2", "z")], rng)),
        ("second_block_sees_first", completion([good, block("a.py", "    return 2", "    return 3")], rng)),
        ("second_block_not_found", completion([good, block("a.py", "    return 1", "    return 3")], rng)),
        ("search_equals_replace", completion([block("a.py", "    return 1", "    return 1")], rng)),
        ("delete_line", completion([block("b.py", "y = 2", "")], rng)),
        ("whitespace_thought", "<think>\u2028\u3000\x1c</think>" + "<solution>" + good + "</solution>"),
        ("think_tag_in_solution", "<think>t</think><solution><think>" + good + "</solution>"),
    ]
    tasks.append({"id": "format-rules", "code_context": ctx, "oracle_new_content": oracle, "outputs": fmt})
    # The spec's worked example: right file plus a new file while the oracle changes two files.
    ctx2 = {"a.py": "def add(a, b):\n    return a + b\n", "b.py": "def sort_list(lst):\n    return sorted(lst)\n"}
    oracle2 = {"a.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
               "b.py": "def sort_list(lst: list[int]) -> list[int]:\n    return sorted(lst)\n"}
    worked = [
        ("right_file_plus_new_file", completion([block("b.py", "def sort_list(lst):", "def sort_list(lst: list[int]) -> list[int]:"),
                                                  block("c.py", "", "# new")], rng)),
        ("both_files", completion([block("a.py", "def add(a, b):", "def add(a: int, b: int) -> int:"),
                                   block("b.py", "def sort_list(lst):", "def sort_list(lst: list[int]) -> list[int]:")], rng)),
    ]
    tasks.append({"id": "worked-example", "code_context": ctx2, "oracle_new_content": oracle2, "outputs": worked})
    # Oracle that changes nothing: every prediction's mean is over its own paths (or 1.0 when none).
    tasks.append({"id": "oracle-unchanged", "code_context": ctx, "oracle_new_content": dict(ctx),
                  "outputs": [("edit_when_oracle_is_empty", completion([good], rng)),
                              ("noop_newline_change", completion([block("a.py", "    return 1", "    return 1\n")], rng))]})
    return tasks


# --------------------------------------------------------------------------------------------
# Matcher, text and unidiff vectors.


def matcher_cases(rng):
    cases = []
    for t in range(1500):
        kind = t % 3
        if kind == 0:  # characters over small alphabets (many ties)
            alpha = rng.choice(["ab", "abc", "abcd ", "xyz\n", "aé😀"])
            a = "".join(rng.choice(alpha) for _ in range(rng.randint(0, 60)))
            b = "".join(rng.choice(alpha) for _ in range(rng.randint(0, 60)))
            junk = rng.choice([None, None, " ", "a"])
            autojunk = rng.random() < 0.5
            cases.append({"kind": "chars", "a": a, "b": b, "autojunk": autojunk, "junk": junk})
        elif kind == 1:  # lines with popular elements (len(b) >= 200 triggers autojunk)
            n = rng.choice([10, 50, 199, 200, 201, 250, 400])
            b = long_file(rng, n, rng.choice([0.05, 0.3, 0.7]))
            a, _ = edit_lines(b, rng, rng.randint(1, 10))
            if rng.random() < 0.5:
                a, b = b, a
            cases.append({"kind": "lines", "a": a, "b": b, "autojunk": True, "junk": None})
        else:  # characters of realistic hunks
            lines = long_file(rng, rng.randint(3, 20), 0.2)
            new, _ = edit_lines(lines, rng, 2)
            a, b = "\n".join(lines), "\n".join(new)
            cases.append({"kind": "chars", "a": a, "b": b, "autojunk": False, "junk": None})
    for c in cases:
        c["expected"] = reference.matcher_summary(c["a"], c["b"], c["autojunk"], c["junk"])
    return cases


def text_cases(rng):
    cases = []
    alphabet = ["a", "b", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85",
                "\u2028", "\u2029", "\u3000", "\xa0", "\u200b", "\ufeff", "é", "😀"]
    for _ in range(800):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        cases.append({"kind": "text", "text": text, "lines": text.splitlines(), "strip": text.strip()})
    for _ in range(400):
        old = "".join(rng.choice(alphabet[:12]) for _ in range(rng.randint(0, 40)))
        new = "".join(rng.choice(alphabet[:12]) for _ in range(rng.randint(0, 40)))
        cases.append({"kind": "change", "old": old, "new": new, "text": reference.change_text(old, new)})
    return cases


def rename_variant(patch):
    out = []
    for line in patch.split("\n"):
        if line.startswith("diff --git a/"):
            src = line.split(" ")[2][2:]
            line = f"diff --git a/{src} b/{src}.renamed\nsimilarity index 90%\nrename from {src}\nrename to {src}.renamed"
        elif line.startswith("+++ b/"):
            line = line + ".renamed"
        out.append(line)
    return "\n".join(out)


def unidiff_pred_variants(inst, rng):
    patch, test_patch = inst["patch"], inst["test_patch"]
    lines = patch.split("\n")
    variants = {
        "same": [patch],
        "test_patch": [test_patch],
        "both": [patch, test_patch],
        "concatenated": [patch + test_patch],
        "mutated": [mutate(patch, rng, 0.01)],
        "drop_line": ["\n".join(l for k, l in enumerate(lines) if k != rng.randrange(len(lines)))],
        "rename": [rename_variant(patch)],
        "binary": [patch + "diff --git a/img.png b/img.png\nindex 1234567..89abcde 100644\nBinary files a/img.png and b/img.png differ\n"],
        "git_binary_patch": [patch + "diff --git a/bin b/bin\nindex 1..2 100644\nGIT binary patch\nliteral 0\nHcmV?d00001\n"],
        "crlf": [patch.replace("\n", "\r\n")],
        "blank_after_hunk": [patch.replace("\ndiff --git", "\n\ndiff --git")],
        "no_newline_marker": [patch + "\\ No newline at end of file\n"],
        "mnemonic": [patch.replace(" a/", " i/").replace(" b/", " w/").replace("--- i/", "--- i/").replace("+++ w/", "+++ w/")],
        "plain_diff_headers": ["\n".join(l for l in lines if not l.startswith(("diff --git", "index ")))],
        "target_first": ["+++ b/x.py\n--- a/x.py\n@@ -1 +1 @@\n-a\n+b\n" + patch],
        "quoted": [patch.replace("a/", '"a/', 1)],
        "empty_names": ["--- \n+++ \n@@ -1 +1 @@\n-a\n+b\n"],
        "garbage": ["this is not a diff\n"],
        "empty": [""],
        "new_file": [patch + "diff --git a/new.txt b/new.txt\nnew file mode 100644\nindex 0000000..e69de29\n"],
        "deleted_file": [patch + "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\n--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"],
        "section_header_zero_pad": [re.sub(r"@@ -(\d+)", lambda m: "@@ -0" + m.group(1), patch)],
    }
    return variants


def unidiff_cases(data_dir, rng, modules):
    instances = []
    for name in ("lite-test.json", "lite-dev.json"):
        with open(os.path.join(data_dir, "swebench", name)) as f:
            instances += json.load(f)
    cases = []
    for inst in instances:
        variants = unidiff_pred_variants(inst, rng)
        for name in rng.sample(sorted(variants), 8):
            oracle = [inst["patch"]]
            pred = variants[name]
            if rng.random() < 0.2:
                oracle, pred = pred, oracle
            expected = {d: reference.unidiff_reward(oracle, pred, m) for d, m in modules.items()}
            cases.append({"id": inst["instance_id"], "variant": name, "oracle": oracle, "pred": pred, "expected": expected})
    return cases


# --------------------------------------------------------------------------------------------


def cross_check(swe_rl, tasks, ucases, modules):
    """Checks every expected value against the paper's reward.py (facebookresearch/swe-rl)."""
    sys.path.insert(0, os.path.join(swe_rl, "src"))
    n = 0
    for dialect, module in modules.items():
        sys.modules["unidiff"] = module
        sys.modules["unidiff.errors"] = importlib.import_module(module.__name__ + ".errors")
        for name in [m for m in sys.modules if m.startswith("swerl")]:
            del sys.modules[name]
        import warnings
        warnings.simplefilter("ignore")
        from swerl.core import reward as paper  # noqa: E402

        if dialect == "v1":
            for task in tasks:
                for c in task["cases"]:
                    got, _ = paper.calculate_search_replace_reward(task["code_context"], task["oracle_new_content"], c["output"])
                    assert abs(got - c["reward"]) < 1e-12, (task["id"], c["name"], got, c["reward"])
                    n += 1
        for c in ucases:
            got, _ = paper.calculate_reward_unidiff(c["oracle"], c["pred"])
            assert abs(got - c["expected"][dialect]["reward"]) < 1e-12, (c["id"], c["variant"], dialect)
            n += 1
    print(f"cross-checked {n} values against {swe_rl}", file=sys.stderr)


def write(name, rows):
    path = os.path.join(HERE, name)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
    print(f"{name}: {len(rows)} rows, {os.path.getsize(path)} bytes", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
    parser.add_argument("--data", default=default_data, help="the shared data folder (default: %(default)s)")
    parser.add_argument("--swe-rl", help="a checkout of facebookresearch/swe-rl to cross-check against")
    args = parser.parse_args()
    rng = random.Random(20250224)

    tasks = []
    for task in swebench_tasks(args.data, rng) + synthetic_tasks(rng):
        task["cases"] = []
        for name, output in task.pop("outputs"):
            exp = reference.search_replace_reward(task["code_context"], task["oracle_new_content"], output)
            task["cases"].append({"name": name, "output": output, "reward": exp["reward"], "error": exp["error"],
                                  "error_fields": exp["error_fields"], "similarities": exp["similarities"]})
        tasks.append(task)
    modules = {d: load_unidiff(v) for d, v in UNIDIFF_RELEASES.items()}
    ucases = unidiff_cases(args.data, rng, modules)
    if args.swe_rl:
        cross_check(args.swe_rl, tasks, ucases, modules)
    write("reward_cases.jsonl.gz", tasks)
    write("matcher_cases.jsonl.gz", matcher_cases(rng))
    write("text_cases.jsonl.gz", text_cases(rng))
    write("unidiff_cases.jsonl.gz", ucases)
    n = sum(len(t["cases"]) for t in tasks)
    errors = sum(c["error"] is not None for t in tasks for c in t["cases"])
    print(f"{n} search/replace cases ({errors} format errors) in {len(tasks)} tasks", file=sys.stderr)


if __name__ == "__main__":
    main()
