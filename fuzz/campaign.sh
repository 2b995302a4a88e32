#!/usr/bin/env bash
# A fuzzing campaign (not part of CI): every target in turn for MINUTES of wall time each,
# one process at `nice -n 19`, then a table of inputs run, wall and CPU time and crashes.
#
#   fuzz/campaign.sh [MINUTES] [TARGET ...]      (default: 10 minutes, every target)
#
# Env: CARGO_TARGET_DIR (default /var/tmp/ferry-target-fuzz), FUZZ_SANITIZER (default none:
# see fuzz/README.md for why), FERRY_KAFKA (when set and a target has no corpus yet,
# `make_seeds` writes seeds from that broker's real answers first), FUZZ_OUT (the table,
# default benches/results/fuzz-<date>.md, beside the benchmarks' results).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
MINUTES="${1:-10}"
[[ "$MINUTES" =~ ^[0-9]+$ ]] || { echo "campaign.sh: MINUTES must be a whole number, got '$MINUTES'" >&2; exit 2; }
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=(kafka_response fetch_response batches raw_segment backup_documents checkpoint)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferry-target-fuzz}"
SAN="${FUZZ_SANITIZER:-none}"
OUT="${FUZZ_OUT:-$HERE/../benches/results/fuzz-$(date -u +%Y-%m-%dT%H%M).md}"
BIN="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"

log() { echo "campaign: $*" >&2; }

log "building the targets (sanitizer: $SAN, debug assertions on)"
for t in "${TARGETS[@]}"; do
  cargo +nightly fuzz build --features backup -s "$SAN" --debug-assertions "$t" >&2
done

if [[ -n "${FERRY_KAFKA:-}" ]]; then
  for t in "${TARGETS[@]}"; do
    if [[ ! -d "corpus/$t" ]] || [[ -z "$(ls -A "corpus/$t")" ]]; then
      # A plain build: without a sanitizer's runtime, coverage-instrumented code that is not
      # a fuzz target does not link.
      log "seeding the corpora from $FERRY_KAFKA and Ferry's own encodings"
      cargo +nightly build --release --features backup --bin make_seeds \
        --target-dir "$CARGO_TARGET_DIR/seeds" >&2
      "$CARGO_TARGET_DIR/seeds/release/make_seeds" corpus >&2
      break
    fi
  done
fi

rows=()
total_runs=0
total_cpu=0
total_crashes=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  run_log="$CARGO_TARGET_DIR/campaign-$t.log"
  # libFuzzer names what it saves by kind: crash-, leak-, oom-, timeout- are findings;
  # slow-unit- only marks an input that took long (see the README for how to read them).
  findings() { find "artifacts/$1" -type f ! -name 'slow-unit-*' | wc -l; }
  slow_before=$(find "artifacts/$t" -type f -name 'slow-unit-*' | wc -l)
  before=$(findings "$t")
  log "$t: $MINUTES minute(s), log $run_log"
  rc=0
  /usr/bin/time -f '%U %S %e' -o "$run_log.time" nice -n 19 "$BIN/$t" \
    -max_total_time=$((MINUTES * 60)) -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" "corpus/$t" >"$run_log" 2>&1 || rc=$?
  read -r user sys wall < <(tail -n 1 "$run_log.time")
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$run_log" | grep -o '[0-9]*$' | tail -n 1)
  runs="${runs:-0}"
  crashes=$(($(findings "$t") - before))
  slow=$(($(find "artifacts/$t" -type f -name 'slow-unit-*' | wc -l) - slow_before))
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", (u + s) / 60 }')
  usr=$(awk -v u="$user" 'BEGIN { printf "%.1f", u / 60 }')
  walls=$(awk -v w="$wall" 'BEGIN { printf "%.1f", w / 60 }')
  corpus=$(find "corpus/$t" -type f | wc -l)
  rows+=("| \`$t\` | $runs | $corpus | $walls | $cpu | $usr | $crashes | $slow | $rc |")
  total_runs=$((total_runs + runs))
  total_crashes=$((total_crashes + crashes))
  total_cpu=$(awk -v a="$total_cpu" -v b="$cpu" 'BEGIN { printf "%.1f", a + b }')
  log "$t: $runs inputs, $cpu CPU-minutes, $crashes new finding(s), $slow slow unit(s), exit $rc"
done

{
  echo "# Fuzzing campaign, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "$MINUTES minute(s) of wall time per target, one process each at nice 19, sanitizer \`$SAN\`, debug assertions on; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo
  echo "| target | inputs run | corpus files | wall min | CPU min (user+sys) | of it user | new findings | slow units | exit |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo "| total | $total_runs | | | $total_cpu | | $total_crashes | | |"
  echo
  echo "Command: \`fuzz/campaign.sh $MINUTES${*:+ $*}\` at $(git -C "$HERE" rev-parse --short HEAD)"
} >"$OUT"
cat "$OUT"
((total_crashes == 0))
