"""A Python implementation of the SWE-RL reward, written from the project's spec/reward.md.

It is the oracle for swerl-reward's golden vectors (make_golden.py) and for the live
differential test (tests/reward.rs starts `python3 reference.py serve`). Only the standard
library is needed, except `unidiff` for the unified-diff reward.

    python3 reference.py serve    # JSON lines on stdin -> JSON lines on stdout
"""

import difflib
import json
import re
import sys

TAGS = ("<think>", "</think>", "<solution>", "</solution>")
EDIT_BLOCK = re.compile(
    r"```.*?\n### (.*)\n<<<<<<< SEARCH\n([\s\S]*?)\n=======\n([\s\S]*?)\n>>>>>>> REPLACE\n```"
)


class FormatError(Exception):
    def __init__(self, kind, **fields):
        super().__init__(kind)
        self.kind = kind
        self.fields = fields


def thought_and_answer(output):
    for tag in TAGS:
        count = output.count(tag)
        if count != 1:
            raise FormatError("tag_count", tag=tag, count=count)
    thought = output.split("<think>")[1].split("</think>")[0].strip()
    answer = output.split("<solution>")[1].split("</solution>")[0].strip()
    if not thought:
        raise FormatError("empty_thought")
    return thought, answer


def parse_blocks(answer):
    files = {}
    for path, search, replace in EDIT_BLOCK.findall(answer):
        files.setdefault(path, []).append((search, replace))
    return files


def apply_edits(code_context, files):
    new = {}
    for path, edits in files.items():
        text = "\n" + code_context.get(path, "")
        for index, (search, replace) in enumerate(edits):
            if search == replace:
                raise FormatError("identical_edit", path=path, index=index)
            s, r = "\n" + search, "\n" + replace
            if s not in text:
                raise FormatError("search_not_found", path=path, index=index)
            text = text.replace(s, r)
        new[path] = text[1:]
    return new


def change_text(old, new, n=3):
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "old", "new", lineterm="", n=n))
    return "\n".join(lines[2:])


def normalized_patch(code_context, new_content):
    patch = {}
    for path, content in new_content.items():
        text = change_text(code_context.get(path, ""), content)
        if text:
            patch[path] = text
    return patch


def similarities(pred_patch, oracle_patch):
    result = {}
    for path in sorted(set(pred_patch) | set(oracle_patch)):
        pred, oracle = pred_patch.get(path, ""), oracle_patch.get(path, "")
        if not pred or not oracle:
            result[path] = 0.0
        else:
            result[path] = difflib.SequenceMatcher(None, pred, oracle, autojunk=False).ratio()
    return result


def mean(sims):
    return sum(sims.values()) / len(sims) if sims else 1.0


def search_replace_reward(code_context, oracle_new_content, output):
    """-> {"reward", "error" (kind or None), "similarities" {path: float}}"""
    try:
        _, answer = thought_and_answer(output)
        files = parse_blocks(answer)
        if not files:
            raise FormatError("no_edits")
        pred = apply_edits(code_context, files)
    except FormatError as e:
        return {"reward": -1.0, "error": e.kind, "error_fields": e.fields, "similarities": {}}
    sims = similarities(normalized_patch(code_context, pred), normalized_patch(code_context, oracle_new_content))
    return {"reward": mean(sims), "error": None, "error_fields": {}, "similarities": sims}


def file_level_diff(patch_text, unidiff_module):
    """Per-file change texts of a git diff, parsed with the given `unidiff` release."""
    try:
        patch = unidiff_module.PatchSet(patch_text)
    except Exception:  # the reference treats every parser failure as "no files"
        return {}
    result = {}
    for f in patch:
        if f.is_binary_file:
            continue
        if f.is_rename:
            source, target = f.source_file, f.target_file
            source = source[2:] if source.startswith("a/") else source
            target = target[2:] if target.startswith("b/") else target
            header, path = f"rename from {source} to {target}", source
        else:
            header, path = "", f.path
        body = "\n".join(str(h).strip() for h in f)
        result[path] = (header + "\n" + body).strip()
    return result


def unidiff_reward(oracle_patches, pred_patches, unidiff_module):
    oracle, pred = {}, {}
    for p in oracle_patches:
        oracle.update(file_level_diff(p, unidiff_module))
    for p in pred_patches:
        pred.update(file_level_diff(p, unidiff_module))
    sims = similarities(pred, oracle)
    return {"reward": mean(sims), "similarities": sims}


def matcher_summary(a, b, autojunk=True, junk=None):
    isjunk = (lambda x: x in junk) if junk else None

    def fresh():
        return difflib.SequenceMatcher(isjunk, a, b, autojunk=autojunk)

    m = fresh()
    return {
        "blocks": [list(x) for x in m.get_matching_blocks()],
        "opcodes": [list(x) for x in m.get_opcodes()],
        # get_grouped_opcodes trims the matcher's cached opcodes in place, so each n gets its own
        # matcher (a fresh one is what unified_diff uses).
        "grouped": {str(n): [[list(op) for op in g] for g in fresh().get_grouped_opcodes(n)] for n in (0, 1, 3)},
        "ratio": m.ratio(),
        "quick_ratio": m.quick_ratio(),
        "longest": list(m.find_longest_match(0, len(a), 0, len(b))),
    }


def serve():
    """One JSON request per stdin line, one JSON answer per stdout line."""
    for line in sys.stdin:
        req = json.loads(line)
        kind = req["kind"]
        if kind == "reward":
            out = search_replace_reward(req["code_context"], req["oracle_new_content"], req["output"])
        elif kind == "matcher":
            out = matcher_summary(req["a"], req["b"], req.get("autojunk", True), req.get("junk"))
        elif kind == "change_text":
            out = {"text": change_text(req["old"], req["new"])}
        elif kind == "splitlines":
            out = {"lines": req["text"].splitlines(), "strip": req["text"].strip()}
        else:
            raise ValueError(kind)
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit(__doc__)
