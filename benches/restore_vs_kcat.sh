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
# shellcheck source=vs_kcat_lib.sh
. "$HERE/vs_kcat_lib.sh"
id="rvk-$$"
work="$BENCH_HOME/$id"
topics=("$id-src")
cleanup() { admin delete "${topics[@]}" || true; rm -rf "$work"; }
trap cleanup EXIT
admin create "$id-src" "$PARTITIONS"
"$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-src" -q <"$INPUT"
"$FERRY_BIN" backup --brokers "$FERRY_KAFKA" --topic "$id-src" --to "$work/backup" --snapshot 2>/dev/null
lines=$(wc -l <"$INPUT")
for ((r = 1; r <= ROUNDS; r++)); do
  topics+=("$id-r$r" "$id-k$r")
  admin create "$id-k$r" "$PARTITIONS"
  # Ferry first in odd rounds, kcat first in even ones (a step right after a 1 GB write
  # tends to be slower here, whichever it is).
  if ((r % 2)); then
    restore=$(step /dev/null "$FERRY_BIN" restore --from "$work/backup" --brokers "$FERRY_KAFKA" \
      --topic "$id-src" --rename "$id-src=$id-r$r" --state "$work/state-$r")
    kcat=$(step /dev/null "$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-k$r" -q <"$INPUT")
  else
    kcat=$(step /dev/null "$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$id-k$r" -q <"$INPUT")
    restore=$(step /dev/null "$FERRY_BIN" restore --from "$work/backup" --brokers "$FERRY_KAFKA" \
      --topic "$id-src" --rename "$id-src=$id-r$r" --state "$work/state-$r")
  fi
  for t in "$id-r$r" "$id-k$r"; do
    got=$(records "$t")
    [[ "$got" == "$lines" ]] || { echo "round $r: $t holds $got records, not $lines" >&2; exit 1; }
  done
  echo "round $r: ferry restore $restore; kcat -P $kcat (both $lines records)"
  admin delete "$id-r$r" "$id-k$r"
done
