#!/usr/bin/env bash
# Restore against kcat -P, back to back (not a test): fills a topic from the e2e input file
# with kcat, backs it up once, then ROUNDS times restores the backup into a fresh topic and
# produces the input file with kcat -P into another fresh topic, alternately, printing each
# wall time. Topics and the backup are removed at the end.
#
#   benches/restore_vs_kcat.sh [ROUNDS]      (default 3; needs benches/e2e.sh's input file)
#
# Env: FERRY_BIN (default: the release binary), FERRY_BENCH_HOME (/var/tmp/ferry-bench),
# PARTITIONS (6); brokers, kcat and python from /var/tmp/ferry-dev/env.sh (scripts/dev-env up).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS="${1:-3}"
PARTITIONS="${PARTITIONS:-6}"
# shellcheck disable=SC1091
. "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh"
FERRY_BIN="${FERRY_BIN:-${CARGO_TARGET_DIR:-/var/tmp/ferry-target}/release/ferry}"
BENCH_HOME="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
INPUT="$(ls "$BENCH_HOME"/input-*.txt 2>/dev/null | head -1)"
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
wall() { /usr/bin/time -f '%e' "$@" 2>&1 >/dev/null | tail -1; }
for ((r = 1; r <= ROUNDS; r++)); do
  topics+=("$id-r$r" "$id-k$r")
  restore=$(wall "$FERRY_BIN" restore --from "$work/backup" --brokers "$FERRY_KAFKA" \
    --topic "$id-src" --rename "$id-src=$id-r$r" --state "$work/state-$r")
  admin create "$id-k$r" "$PARTITIONS"
  kcat=$(wall "$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-k$r" -q <"$INPUT")
  echo "round $r: ferry restore ${restore}s, kcat -P ${kcat}s"
  admin delete "$id-r$r" "$id-k$r"
done
