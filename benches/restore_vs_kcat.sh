#!/usr/bin/env bash
# Restore against kcat -P, back to back (not a test): fills a topic from the e2e input file
# with kcat, backs it up once, then ROUNDS times restores the backup into a fresh topic and
# produces the input file with kcat -P into another fresh topic, in turns, printing each
# wall time, the client's CPU seconds (user + sys) and the broker's CPU seconds during the
# step (from /proc of the dev broker's JVM), to show where a step's time went: a broker
# working flat out is the limit for both clients. Topics and the backup are removed at the end.
#
#   benches/restore_vs_kcat.sh [ROUNDS]      (default 3; needs benches/e2e.sh's input file)
#
# Env: FERRY_BIN (default: the release binary), FERRY_BENCH_HOME (/var/tmp/ferry-bench), INPUT,
# PARTITIONS (6); brokers, kcat and python from /var/tmp/ferry-dev/env.sh (scripts/dev-env up).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS="${1:-3}"
PARTITIONS="${PARTITIONS:-6}"
# shellcheck disable=SC1091
. "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh"
FERRY_BIN="${FERRY_BIN:-${CARGO_TARGET_DIR:-/var/tmp/ferry-target}/release/ferry}"
BENCH_HOME="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
# e2e.sh's 1,000,000 × 1 KiB input (scale.sh leaves other sizes beside it); INPUT overrides.
INPUT="${INPUT:-$BENCH_HOME/input-1000000-1024.txt}"
[[ -f "$INPUT" ]] || { echo "no input file in $BENCH_HOME: run benches/e2e.sh once" >&2; exit 1; }
[[ -x "$FERRY_BIN" ]] || { echo "no ferry binary at $FERRY_BIN" >&2; exit 1; }
admin() { "$FERRY_PYTHON" "$HERE/kafka_admin.py" "$FERRY_KAFKA" "$@" >/dev/null; }
id="rvk-$$"
work="$BENCH_HOME/$id"
topics=("$id-src")
cleanup() { admin delete "${topics[@]}" || true; rm -rf "$work"; }
trap cleanup EXIT
admin create "$id-src" "$PARTITIONS"
"$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-src" -q <"$INPUT"
"$FERRY_BIN" backup --brokers "$FERRY_KAFKA" --topic "$id-src" --to "$work/backup" --snapshot 2>/dev/null
BROKER_PID="${BROKER_PID:-$(cat "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/run/kafka.pid" 2>/dev/null || true)}"
[[ -n "$BROKER_PID" && -r "/proc/$BROKER_PID/stat" ]] || { echo "no dev broker pid (BROKER_PID)" >&2; exit 1; }
TICKS="$(getconf CLK_TCK)"
# The broker's CPU seconds so far (utime + stime of its JVM; fields 14 and 15 after the
# command name, which has no spaces for java).
broker_cpu() { awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$BROKER_PID/stat"; }
# step CMD...: "wall s, client CPU s, broker CPU s" of one run of CMD (stdin passed on).
step() {
  local b0 b1 out
  b0=$(broker_cpu)
  out=$(/usr/bin/time -f '%e %U %S' "$@" 2>&1 >/dev/null | tail -1)
  b1=$(broker_cpu)
  awk -v o="$out" -v a="$b0" -v b="$b1" 'BEGIN { split(o, f, " "); printf "%.2fs wall, %.2f CPU-s, broker %.2f CPU-s", f[1], f[2] + f[3], b - a }'
}
# Records in a topic (latest - earliest over its partitions), to check every step.
records() {
  "$FERRY_BIN" topics --brokers "$FERRY_KAFKA" --json |
    jq --arg t "$1" '[.[] | select(.topic == $t) | .partitions[] | .latest - .earliest] | add // 0'
}
lines=$(wc -l <"$INPUT")
for ((r = 1; r <= ROUNDS; r++)); do
  topics+=("$id-r$r" "$id-k$r")
  admin create "$id-k$r" "$PARTITIONS"
  # Ferry first in odd rounds, kcat first in even ones (a step right after a 1 GB write
  # tends to be slower here, whichever it is).
  if ((r % 2)); then
    restore=$(step "$FERRY_BIN" restore --from "$work/backup" --brokers "$FERRY_KAFKA" \
      --topic "$id-src" --rename "$id-src=$id-r$r" --state "$work/state-$r")
    kcat=$(step "$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-k$r" -q <"$INPUT")
  else
    kcat=$(step "$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-k$r" -q <"$INPUT")
    restore=$(step "$FERRY_BIN" restore --from "$work/backup" --brokers "$FERRY_KAFKA" \
      --topic "$id-src" --rename "$id-src=$id-r$r" --state "$work/state-$r")
  fi
  for t in "$id-r$r" "$id-k$r"; do
    got=$(records "$t")
    [[ "$got" == "$lines" ]] || { echo "round $r: $t holds $got records, not $lines" >&2; exit 1; }
  done
  echo "round $r: ferry restore $restore; kcat -P $kcat (both $lines records)"
  admin delete "$id-r$r" "$id-k$r"
done
