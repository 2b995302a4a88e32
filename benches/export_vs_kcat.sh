#!/usr/bin/env bash
# Exports against kcat reading to a file, back to back (not a test): fills a topic from the
# e2e input file with kcat -P, then ROUNDS times reads it with kcat -C into a file and exports
# it with `ferry backup --snapshot --format FORMAT` into a fresh folder, in turns (Ferry first
# in odd rounds), printing each step's wall time, its own CPU seconds (user + sys) and the dev
# broker's CPU seconds during the step (from /proc of its JVM), and checking that both hold
# every record. The topic and the outputs are removed at the end.
#
#   benches/export_vs_kcat.sh [ROUNDS] [FORMAT]      (defaults: 3, parquet)
#
# Env: FERRY_BIN (default: the release binary), FERRY_BENCH_HOME (/var/tmp/ferry-bench), INPUT
# (default: e2e.sh's 1,000,000 × 1 KiB input), PARTITIONS (6), BROKER_PID; brokers, kcat and
# python from /var/tmp/ferry-dev/env.sh (scripts/dev-env up).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS="${1:-3}"
FORMAT="${2:-parquet}"
PARTITIONS="${PARTITIONS:-6}"
# shellcheck source=vs_kcat_lib.sh
. "$HERE/vs_kcat_lib.sh"
id="evk-$$"
work="$BENCH_HOME/$id"
mkdir -p "$work"
cleanup() { admin delete "$id-src" || true; rm -rf "$work"; }
trap cleanup EXIT
admin create "$id-src" "$PARTITIONS"
"$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-src" -q <"$INPUT"
lines=$(wc -l <"$INPUT")

kcat_step() {
  kcat=$(step "$work/kcat.out" "$FERRY_KCAT" -b "$FERRY_KAFKA" -C -t "$id-src" -o beginning -e -q)
  local got
  got=$(wc -l <"$work/kcat.out")
  [[ "$got" == "$lines" ]] || { echo "kcat read $got records, not $lines" >&2; exit 1; }
  rm -f "$work/kcat.out"
}
ferry_step() {
  local dir="$work/export-$1"
  ferry=$(step /dev/null "$FERRY_BIN" backup --brokers "$FERRY_KAFKA" --topic "$id-src" \
    --to "$dir" --snapshot --format "$FORMAT" --log-level warn)
  local got
  got=$("$FERRY_BIN" ls "$dir" --json | jq '[.topics[].partitions[].records] | add // 0')
  [[ "$got" == "$lines" ]] || { echo "the $FORMAT export holds $got records, not $lines" >&2; exit 1; }
  rm -rf "$dir"
}
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then ferry_step "$r"; kcat_step; else kcat_step; ferry_step "$r"; fi
  echo "round $r: ferry $FORMAT $ferry; kcat -C → file $kcat (both $lines records)"
done
