#!/usr/bin/env bash
# A/B of two Ferry binaries (not a test): the same snapshot jobs on one topic, the two
# binaries in alternating order, medians of REPEAT rounds, record counts checked after every
# step. For "did this change make Ferry slower or faster" (a build profile, an encoder
# change); kcat is not involved (benches/e2e.sh and benches/scale.sh compare with kcat).
#
#   benches/ab.sh A_BIN B_BIN TOPIC [STEPS...]
#
# STEPS (default: raw parquet avro restore): raw, parquet, avro, iceberg (a `--format F`
# snapshot backup of TOPIC into a fresh folder each) and restore (the raw backup, restored
# into a fresh topic; needs raw). TOPIC must exist on FERRY_KAFKA with its records (e.g. filled
# by benches/scale.sh --keep or `ferry run` with a generator source). REPEAT (default 3).
# Env: FERRY_KAFKA, FERRY_PYTHON (default: /var/tmp/ferry-dev/env.sh), FERRY_BENCH_HOME
# (/var/tmp/ferry-bench). Prints one line per step: both medians of wall time, B's over A's,
# both medians of CPU time (user + sys: less noisy than wall on a shared machine), and every
# round's wall seconds and peak RSS.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "ab: ERROR: $*" >&2; exit 1; }
(($# >= 3)) || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A="$(realpath "$1")" B="$(realpath "$2")" TOPIC="$3"
shift 3
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(raw parquet avro restore)
REPEAT="${REPEAT:-3}"
[[ -x "$A" && -x "$B" ]] || die "both binaries must be executable files"
DEV_ENV="${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh"
if [[ -z "${FERRY_KAFKA:-}" || -z "${FERRY_PYTHON:-}" ]]; then
  [[ -f "$DEV_ENV" ]] || die "FERRY_KAFKA/FERRY_PYTHON unset and no $DEV_ENV: run scripts/dev-env up"
  # shellcheck disable=SC1090
  source "$DEV_ENV"
fi
WORK="$(mktemp -d "${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}/ab-XXXX")"
RESTORED=()
cleanup() {
  ((${#RESTORED[@]})) && "$FERRY_PYTHON" "$HERE/kafka_admin.py" "$FERRY_KAFKA" delete "${RESTORED[@]}" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

records_in_topic() {
  "$A" topics --brokers "$FERRY_KAFKA" --json |
    jq --arg t "$1" '[.[] | select(.topic == $t) | .partitions[] | .latest - .earliest] | add // 0'
}
# Records in the table of an iceberg step (its snapshot summary, read by pyiceberg).
iceberg_records() {
  "$FERRY_PYTHON" - "$1" <<'PY'
import sys
from pyiceberg.catalog.sql import SqlCatalog
d = sys.argv[1]
t = SqlCatalog("ferry", uri=f"sqlite:///{d}/catalog.db", warehouse=f"file://{d}/warehouse").load_table("bench.events")
print(t.current_snapshot().summary.additional_properties["total-records"])
PY
}
records_in_backup() { "$A" ls "$1" --json | jq '[.topics[].partitions[].records] | add // 0'; }
WANT="$(records_in_topic "$TOPIC")"
((WANT > 0)) || die "topic $TOPIC has no records on $FERRY_KAFKA"

# step BIN LABEL STEP ROUND: runs one step, appends "STEP LABEL wall rss_kib" to results.
step() {
  local bin="$1" label="$2" s="$3" r="$4" out="$WORK/$2-$3" cmd got
  rm -rf "$out"
  case "$s" in
    raw | parquet | avro | iceberg)
      cmd=("$bin" backup --brokers "$FERRY_KAFKA" --topic "$TOPIC" --to "$out" --snapshot --format "$s")
      # An Iceberg table on a SQLite catalog and a local warehouse, as in benches/e2e.sh.
      [[ "$s" == iceberg ]] && { mkdir -p "$out"; cmd=("$bin" backup --brokers "$FERRY_KAFKA" --topic "$TOPIC" --snapshot \
        --format iceberg --catalog "sqlite://$out/catalog.db" --to "$out/warehouse" --table bench.events); }
      ;;
    restore)
      local t="ab-$$-$label-$r"
      RESTORED+=("$t")
      cmd=("$bin" restore --from "$WORK/$label-raw-keep" --brokers "$FERRY_KAFKA" --topic "$TOPIC" --rename "$TOPIC=$t" --state "$out")
      ;;
    *) die "unknown step $s" ;;
  esac
  sync
  /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "${cmd[@]}" >/dev/null 2>"$WORK/log" || { tail -20 "$WORK/log" >&2; die "$label $s failed"; }
  case "$s" in
    restore) got="$(records_in_topic "ab-$$-$label-$r")"; "$FERRY_PYTHON" "$HERE/kafka_admin.py" "$FERRY_KAFKA" delete "ab-$$-$label-$r" >/dev/null 2>&1 || true ;;
    raw) got="$(records_in_backup "$out")"; rm -rf "$WORK/$label-raw-keep"; mv "$out" "$WORK/$label-raw-keep" ;;
    iceberg) got="$(iceberg_records "$out")" ;;
    *) got="$(records_in_backup "$out")" ;;
  esac
  [[ "$got" == "$WANT" ]] || die "$label $s: $got records, want $WANT"
  rm -rf "$out"
  echo "$s $label $(cat "$WORK/time")" >>"$WORK/results"
  echo "ab: round $r $label $s: $(cut -d' ' -f1 "$WORK/time") s" >&2
}

for ((r = 1; r <= REPEAT; r++)); do
  for s in "${STEPS[@]}"; do
    if ((r % 2)); then step "$A" A "$s" "$r"; step "$B" B "$s" "$r"; else step "$B" B "$s" "$r"; step "$A" A "$s" "$r"; fi
  done
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "A: $A"
echo "B: $B"
echo "topic $TOPIC ($WANT records), $REPEAT rounds, alternating; load before the last step: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| step | A s | B s | B / A | A CPU s | B CPU s | A rounds s (peak RSS MiB) | B rounds s (peak RSS MiB) |"
echo "|---|---:|---:|---:|---:|---:|---|---|"
for s in "${STEPS[@]}"; do
  a=$(awk -v s="$s" '$1 == s && $2 == "A" { print $3 }' "$WORK/results" | median)
  b=$(awk -v s="$s" '$1 == s && $2 == "B" { print $3 }' "$WORK/results" | median)
  ac=$(awk -v s="$s" '$1 == s && $2 == "A" { print $5 + $6 }' "$WORK/results" | median)
  bc=$(awk -v s="$s" '$1 == s && $2 == "B" { print $5 + $6 }' "$WORK/results" | median)
  ar=$(awk -v s="$s" '$1 == s && $2 == "A" { printf "%s%s (%.0f)", sep, $3, $4 / 1024; sep = ", " }' "$WORK/results")
  br=$(awk -v s="$s" '$1 == s && $2 == "B" { printf "%s%s (%.0f)", sep, $3, $4 / 1024; sep = ", " }' "$WORK/results")
  echo "| $s | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }') | $ac | $bc | $ar | $br |"
done
