# Shared by restore_vs_kcat.sh and export_vs_kcat.sh (sourced, not run): the dev environment,
# the Ferry binary and input file, and a timed step that also counts the dev broker's CPU.
# The caller sets HERE (the benches folder) and `set -euo pipefail`.

# shellcheck disable=SC1091
. "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh"
FERRY_BIN="${FERRY_BIN:-${CARGO_TARGET_DIR:-/var/tmp/ferry-target}/release/ferry}"
BENCH_HOME="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
# e2e.sh's 1,000,000 × 1 KiB input (scale.sh leaves other sizes beside it); INPUT overrides.
INPUT="${INPUT:-$BENCH_HOME/input-1000000-1024.txt}"
[[ -f "$INPUT" ]] || { echo "no input file $INPUT: run benches/e2e.sh once" >&2; exit 1; }
[[ -x "$FERRY_BIN" ]] || { echo "no ferry binary at $FERRY_BIN" >&2; exit 1; }
BROKER_PID="${BROKER_PID:-$(cat "${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/run/kafka.pid" 2>/dev/null || true)}"
[[ -n "$BROKER_PID" && -r "/proc/$BROKER_PID/stat" ]] || { echo "no dev broker pid (BROKER_PID)" >&2; exit 1; }
TICKS="$(getconf CLK_TCK)"

admin() { "$FERRY_PYTHON" "$HERE/kafka_admin.py" "$FERRY_KAFKA" "$@" >/dev/null; }

# The broker's CPU seconds so far (utime + stime of its JVM: fields 14 and 15, the command
# name having no spaces for java).
broker_cpu() { awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$BROKER_PID/stat"; }

# step OUT CMD...: "wall s, CPU s, broker CPU s" of one run of CMD after a `sync`, its stdout
# into OUT (stdin passed on).
step() {
  local out_file="$1" b0 b1 out
  shift
  sync
  b0=$(broker_cpu)
  out=$( { /usr/bin/time -f '%e %U %S' "$@" >"$out_file"; } 2>&1 | tail -1)
  b1=$(broker_cpu)
  awk -v o="$out" -v a="$b0" -v b="$b1" 'BEGIN { split(o, f, " "); printf "%.2fs wall, %.2f CPU-s, broker %.2f CPU-s", f[1], f[2] + f[3], b - a }'
}

# Records in a topic (latest - earliest over its partitions), to check every step.
records() {
  "$FERRY_BIN" topics --brokers "$FERRY_KAFKA" --json |
    jq --arg t "$1" '[.[] | select(.topic == $t) | .partitions[] | .latest - .earliest] | add // 0'
}
