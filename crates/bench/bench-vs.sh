#!/usr/bin/env bash
# Runs the benchmark suite of git revision BASE and of this working tree side by side on this
# machine, alternating the two builds ROUNDS times (default 2), and prints `kiln-bench diff`'s
# Markdown table (best median of each side, new/base). Extra arguments go to every kiln-bench
# run, e.g. `--backend cpu --max-seconds 3`. Usage: bench-vs.sh BASE [kiln-bench args...]
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bench-vs.sh BASE-REVISION [kiln-bench args...]" >&2
    exit 2
fi
base=$1
shift
rounds=${ROUNDS:-2}
root=$(git rev-parse --show-toplevel)
cd "$root"
rev=$(git rev-parse --short "$base^{commit}")
out=target/bench/vs-$rev
base_target=target/bench/base-target
mkdir -p "$out"
tree=$(mktemp -d)
git worktree add --quiet --detach "$tree" "$rev"
trap 'git worktree remove --force "$tree"' EXIT
cargo build --release -p kiln-bench -p kiln-cli --manifest-path "$tree/Cargo.toml" \
    --target-dir "$base_target"
cargo build --release -p kiln-bench -p kiln-cli
args=()
for i in $(seq "$rounds"); do
    echo "round $i/$rounds: base $rev" >&2
    "$base_target/release/kiln-bench" --kiln-bin "$base_target/release/kiln" --no-limits \
        --json-only --out "$out/base-$i.jsonl" "$@" >/dev/null
    echo "round $i/$rounds: this tree" >&2
    target/release/kiln-bench --kiln-bin target/release/kiln --no-limits --json-only \
        --out "$out/new-$i.jsonl" "$@" >/dev/null
    args+=(--base "$out/base-$i.jsonl" --new "$out/new-$i.jsonl")
done
echo "base $rev vs $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes'), $rounds rounds, $(date -u +%Y-%m-%dT%H:%MZ)"
target/release/kiln-bench diff "${args[@]}"
