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
# shellcheck disable=SC1091
. "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh"
FERRY_BIN="${FERRY_BIN:-${CARGO_TARGET_DIR:-/var/tmp/ferry-target}/release/ferry}"
BENCH_HOME="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
INPUT="${INPUT:-$BENCH_HOME/input-1000000-1024.txt}"
[[ -f "$INPUT" ]] || { echo "no input file $INPUT: run benches/e2e.sh once" >&2; exit 1; }
[[ -x "$FERRY_BIN" ]] || { echo "no ferry binary at $FERRY_BIN" >&2; exit 1; }
BROKER_PID="${BROKER_PID:-$(cat "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/run/kafka.pid" 2>/dev/null || true)}"
[[ -n "$BROKER_PID" && -r "/proc/$BROKER_PID/stat" ]] || { echo "no dev broker pid (BROKER_PID)" >&2; exit 1; }
TICKS="$(getconf CLK_TCK)"
admin() { "$FERRY_PYTHON" "$HERE/kafka_admin.py" "$FERRY_KAFKA" "$@" >/dev/null; }
id="evk-$$"
work="$BENCH_HOME/$id"
mkdir -p "$work"
cleanup() { admin delete "$id-src" || true; rm -rf "$work"; }
trap cleanup EXIT
admin create "$id-src" "$PARTITIONS"
"$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-src" -q <"$INPUT"
lines=$(wc -l <"$INPUT")

# The broker's CPU seconds so far (utime + stime of its JVM).
broker_cpu() { awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$BROKER_PID/stat"; }
# step OUT CMD...: "wall s, CPU s, broker CPU s" of one run of CMD, its stdout into OUT.
step() {
  local out_file="$1" b0 b1 out
  shift
  sync
  b0=$(broker_cpu)
  out=$( { /usr/bin/time -f '%e %U %S' "$@" >"$out_file"; } 2>&1 | tail -1)
  b1=$(broker_cpu)
  awk -v o="$out" -v a="$b0" -v b="$b1" 'BEGIN { split(o, f, " "); printf "%.2fs wall, %.2f CPU-s, broker %.2f CPU-s", f[1], f[2] + f[3], b - a }'
}
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
