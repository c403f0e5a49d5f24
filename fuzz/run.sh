#!/usr/bin/env bash
# Runs every fuzz target for a while: `fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]` (default 60
# seconds, all six targets). Needs cargo-fuzz (installed from crates.io when missing); a stable
# toolchain is enough, its `-Z` flags are enabled with RUSTC_BOOTSTRAP=1.
# The committed seeds live in fuzz/seeds/<target> and are only read; the corpus libFuzzer grows is
# fuzz/corpus/<target> (git-ignored). Crashes land in fuzz/artifacts/<target>/ (git-ignored), the
# build in fuzz/target/ (git-ignored), and each run's log in fuzz/logs/<target>.log (git-ignored).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(reward unidiff gharchive_line gguf_header chat_template configs)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
mkdir -p logs
cargo fuzz build
failed=()
for target in "${targets[@]}"; do
    printf '\n=== %s (%ss)\n' "$target" "$secs"
    mkdir -p "corpus/$target"
    cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 2>&1 | tee "logs/$target.log" \
        || failed+=("$target")
done
if [ ${#failed[@]} -gt 0 ]; then
    printf '\nfailed (see fuzz/artifacts/<target>/ and fuzz/logs/<target>.log): %s\n' "${failed[*]}"
    exit 1
fi
