#!/usr/bin/env bash
# `ferry copy` of a 1 GB raw backup (1,000,000 × 1 KiB records, 6 partitions, 12 segments of
# up to 128 MiB) to a folder — beside `cp -r` of the same folder, then `sync` — and to S3
# (moto); each step ROUNDS times in alternating order, medians, peak RSS, every copy checked
# with `ferry ls --json` against the backup (records per partition) and, for one S3 copy per
# round, `ferry verify`. Not a test.
#
#   benches/copy.sh [ROUNDS]          (default 3)
#
# Env: FERRY_BIN (default: the release build, built first), FERRY_BIN_B (a second binary to
# time beside it, e.g. an older build: its steps are labelled "B"), FERRY_BENCH_HOME
# (/var/tmp/ferry-bench: the input file and the backup are kept there), and the dev
# environment's FERRY_KAFKA, FERRY_KCAT, FERRY_S3_* (from `scripts/dev-env env-file`).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROUNDS="${1:-3}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "copy.sh: ROUNDS must be a positive number, got '$ROUNDS'" >&2; exit 2; }
# shellcheck disable=SC1091
source /var/tmp/ferry-dev/env.sh
HOME_DIR="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
INPUT="$HOME_DIR/input-1000000-1024.txt"
BACKUP="$HOME_DIR/copy-src"
WORK="$HOME_DIR/copy-work"
TOPIC=copybench
if [[ -z "${FERRY_BIN:-}" ]]; then
  (cd "$HERE/.." && cargo build --release -p ferry >&2)
  FERRY_BIN=/var/tmp/ferry-target/release/ferry
fi
log() { echo "copy: $*" >&2; }
die() { echo "copy.sh: $*" >&2; exit 1; }

[[ -s "$INPUT" ]] || die "no input file $INPUT: run benches/e2e.sh once, which writes it"
if [[ ! -e "$BACKUP/ferry.json" ]]; then
  log "making the backup: $TOPIC (6 partitions) from $INPUT"
  "$FERRY_PYTHON" - "$FERRY_KAFKA" "$TOPIC" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in a.create_topics([NewTopic(sys.argv[2], 6, 1)]).values():
    try:
        f.result()
    except Exception as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise
PY
  "$FERRY_KCAT" -b "$FERRY_KAFKA" -P -t "$TOPIC" -q <"$INPUT"
  "$FERRY_BIN" backup --brokers "$FERRY_KAFKA" --topic "$TOPIC" --to "$BACKUP" --snapshot >&2
fi

held() { # URI: records per partition, as `ferry ls --json` counts them
  "$FERRY_BIN" ls "$1" --json | "$FERRY_PYTHON" -c '
import json, sys
v = json.load(sys.stdin)
print(sorted((t["topic"], p["partition"], p["records"]) for t in v["topics"] for p in t["partitions"]))'
}
WANT="$(held "$BACKUP")"
total=$("$FERRY_PYTHON" -c "import ast, sys; print(sum(r for _, _, r in ast.literal_eval(sys.argv[1])))" "$WANT")
[[ "$total" == 1000000 ]] || die "the backup $BACKUP holds $total records, not 1000000: remove it to make it again"

declare -A WALL RSS
STEPS=()
timed() { # STEP CMD...
  local step="$1" tf
  shift
  tf="$(mktemp)"
  [[ -v "WALL[$step]" ]] || STEPS+=("$step")
  sync
  /usr/bin/time -f '%e %M' -o "$tf" "$@" >/dev/null 2>>"$WORK.log" || die "step $step failed (log $WORK.log)"
  read -r e m <"$tf"
  rm -f "$tf"
  WALL[$step]="${WALL[$step]:-} $e"
  if [[ -z "${RSS[$step]:-}" ]] || ((m > RSS[$step])); then RSS[$step]=$m; fi
  log "$step: ${e}s, $((m / 1024)) MiB"
}
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

s3_uri() { echo "s3://$FERRY_S3_BUCKET/$1?endpoint=$FERRY_S3_ENDPOINT&region=$AWS_REGION"; }
drop_s3() { # PREFIX: deletes it from moto (which holds objects in memory)
  "$FERRY_PYTHON" - "$FERRY_S3_ENDPOINT" "$FERRY_S3_BUCKET" "$1" <<'PY'
import sys, boto3
ep, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=ep)
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
    if keys:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
PY
}

BINS=(A)
[[ -n "${FERRY_BIN_B:-}" ]] && BINS+=(B)
bin_of() { if [[ "$1" == B ]]; then echo "$FERRY_BIN_B"; else echo "$FERRY_BIN"; fi; }
: >"$WORK.log"
for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r of $ROUNDS"
  steps=(cp)
  for b in "${BINS[@]}"; do steps+=("folder-$b" "s3-$b"); done
  n=${#steps[@]}
  for ((i = 0; i < n; i++)); do
    step="${steps[$(((i + r - 1) % n))]}"
    rm -rf "$WORK"
    case "$step" in
      cp)
        timed "cp -r, then sync" bash -c "cp -r '$BACKUP' '$WORK' && sync"
        ;;
      folder-*)
        timed "ferry copy → folder (${step#folder-})" "$(bin_of "${step#folder-}")" copy "$BACKUP" "$WORK"
        [[ "$(held "$WORK")" == "$WANT" ]] || die "the folder copy does not hold what the backup holds"
        ;;
      s3-*)
        prefix="copybench-$r-${step#s3-}-$$"
        timed "ferry copy → S3 (${step#s3-})" "$(bin_of "${step#s3-}")" copy "$BACKUP" "$(s3_uri "$prefix")"
        [[ "$(held "$(s3_uri "$prefix")")" == "$WANT" ]] || die "the S3 copy does not hold what the backup holds"
        "$FERRY_BIN" verify "$(s3_uri "$prefix")" >/dev/null || die "ferry verify failed on the S3 copy"
        drop_s3 "$prefix"
        ;;
    esac
  done
  rm -rf "$WORK"
done

OUT="$HERE/results/copy-$(date -u +%Y-%m-%d).md"
{
  echo "# ferry copy, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "A raw backup of 1,000,000 × 1 KiB records ($(du -sm "$BACKUP" | cut -f1) MiB, $(find "$BACKUP" -name '*.log' | wc -l) segments) copied $ROUNDS× per step, in rotating order; S3 is moto on 127.0.0.1. A: $FERRY_BIN${FERRY_BIN_B:+; B: $FERRY_BIN_B}."
  echo
  echo "| step | median wall s | MB/s | peak RSS MiB | wall s of each round |"
  echo "|---|---:|---:|---:|---|"
  mb=$(du -sm "$BACKUP" | cut -f1)
  for s in "${STEPS[@]}"; do
    w=$(median "${WALL[$s]}")
    echo "| $s | $w | $(awk -v m="$mb" -v w="$w" 'BEGIN { printf "%.0f", m * 1.048576 / w }') | $((RSS[$s] / 1024)) | $(echo ${WALL[$s]} | sed 's/ /, /g') |"
  done
  echo
  echo "Checks: every copy holds the backup's records per partition (\`ferry ls --json\`); every S3 copy passes \`ferry verify\`."
  echo
  echo "Command: \`benches/copy.sh $ROUNDS\`; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
} >"$OUT"
cat "$OUT"
