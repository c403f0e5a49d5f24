#!/usr/bin/env python3
"""Independent count of what swerl-data must find in the real GH Archive sample.

Reads shared/data/gharchive/*.json.gz with the standard library only and writes
gharchive_2021-07-21.json: event counts per type, the merged PRs, and for every PR the
same-repository issues its title and body link with the keyword convention
(close/closes/closed/fix/fixes/fixed/resolve/resolves/resolved, then ':' or whitespace, then
'#N', 'OWNER/REPO#N' or 'https://github.com/OWNER/REPO/issues/N' of the same repository; HTML
comments removed first). A PR's title and body are the non-empty values of its latest event
(by created_at, then id) among PullRequestEvent, PullRequestReviewEvent and
PullRequestReviewCommentEvent.

Usage: python3 make_gharchive.py [GHARCHIVE_DIR]   (default: ../../../../shared/data/gharchive)
"""
import collections
import glob
import gzip
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "..", "shared", "data", "gharchive")

KEYWORDS = {"close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved"}
COMMENT = re.compile(r"<!--.*?-->", re.S)
# word, separator, target
REF = re.compile(r"([A-Za-z]+)(:[ \t]*|[ \t]+)(#\d+|[\w.-]+/[\w.-]+#\d+|https?://(?:www\.)?github\.com/[\w.-]+/[\w.-]+/issues/\d+)\b")


def links(text, repo, number):
    out = []
    text = COMMENT.sub("", text)
    for m in REF.finditer(text):
        word, _, target = m.groups()
        if word.lower() not in KEYWORDS:
            continue
        start = m.start(1)
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            continue  # keyword must start at a word boundary
        if target.startswith("#"):
            owner_repo, n = repo, target[1:]
        elif target.startswith("http"):
            parts = target.split("/")
            owner_repo, n = parts[3] + "/" + parts[4], parts[6]
        else:
            owner_repo, n = target.split("#")
        n = int(n)
        if owner_repo.lower() == repo.lower() and n != number and n not in out:
            out.append(n)
    return out


def main():
    types = collections.Counter()
    merged = set()
    pr_keys = set()
    latest = {}  # (repo, n) -> {field: (stamp, value)}
    pr_events_with_links = 0
    files = sorted(glob.glob(os.path.join(SRC, "*.json.gz")))
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                e = json.loads(line)
                types[e["type"]] += 1
                if e["type"] not in ("PullRequestEvent", "PullRequestReviewEvent", "PullRequestReviewCommentEvent"):
                    continue
                p = e["payload"]
                pr = p["pull_request"]
                key = (e["repo"]["name"], pr["number"])
                pr_keys.add(key)
                stamp = (e["created_at"], int(e["id"]))
                if e["type"] == "PullRequestEvent" and p["action"] == "closed" and pr.get("merged"):
                    merged.add(key)
                if e["type"] == "PullRequestEvent" and any(links(pr.get(f) or "", key[0], key[1]) for f in ("title", "body")):
                    pr_events_with_links += 1
                slot = latest.setdefault(key, {})
                for field in ("title", "body"):
                    v = pr.get(field) or ""
                    if v and (field not in slot or slot[field][0] < stamp):
                        slot[field] = (stamp, v)
    pr_links = {}
    for (repo, n), slot in sorted(latest.items()):
        text = [slot.get("title", (None, ""))[1], slot.get("body", (None, ""))[1]]
        found = []
        for t in text:
            for x in links(t, repo, n):
                if x not in found:
                    found.append(x)
        if found:
            pr_links[f"{repo}#{n}"] = found
    out = {
        "files": [os.path.basename(p) for p in files],
        "events": sum(types.values()),
        "by_type": dict(sorted(types.items())),
        "prs_with_pr_events": len(pr_keys),
        "pull_request_events_with_links": pr_events_with_links,
        "merged": sorted([list(k) for k in merged]),
        "links": pr_links,
        "merged_with_links": sorted(k for k in pr_links if tuple([k.split("#")[0], int(k.split("#")[1])]) in merged),
    }
    dst = os.path.join(HERE, "gharchive_2021-07-21.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{dst}: {out['events']} events, {len(merged)} merged PRs, {len(pr_links)} PRs with links")


if __name__ == "__main__":
    main()
