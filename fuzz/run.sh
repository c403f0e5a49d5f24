#!/usr/bin/env bash
# Runs every fuzz target for a while: `fuzz/run.sh [SECONDS_PER_TARGET]` (default 60).
# Needs cargo-fuzz (installed from crates.io when missing); a stable toolchain is enough, its
# `-Z` flags are enabled with RUSTC_BOOTSTRAP=1. Corpora grow under fuzz/corpus/<target>; the
# committed files there are the seeds. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in reward unidiff gharchive_line gguf_header chat_template configs; do
    printf '\n=== %s (%ss)\n' "$target" "$secs"
    cargo fuzz run "$target" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096
done
