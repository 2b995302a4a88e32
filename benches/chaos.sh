#!/usr/bin/env bash
# Ferry's kill -9 campaign (not a test; long): randomized SIGKILL trials of a snapshot backup
# and of a restore on the dev Kafka, each counting lost and duplicated records.
#
#   benches/chaos.sh [--trials N] [--records R] [--partitions P] [--max-kills K]
#                    [--seed S] [--out FILE] [--no-build] [--cluster]
#
# Defaults: 20 backup and 20 restore trials of a 30,000-record, 3-partition topic, 1..4 kills
# each; the table goes to stdout and to benches/results/chaos[-cluster]-<date and time>.md. Exits 1 when any
# trial lost or duplicated a record or failed `ferry verify`. FERRY_BIN picks the binary
# (default: the release build, built first unless --no-build). --cluster runs it on the
# 3-node cluster (started with `scripts/dev-env cluster-up`), killing a broker node in every
# trial as well. See benches/chaos.py.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BUILD=1
CLUSTER=0
args=()
out=""
while (($#)); do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --out) out="${2:?--out needs a file}"; shift 2 ;;
    --cluster) CLUSTER=1; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
"$ROOT/scripts/dev-env" up >&2
# shellcheck disable=SC1090
. "$("$ROOT/scripts/dev-env" env-file)"
broker="$FERRY_KAFKA"
if ((CLUSTER)); then
  "$ROOT/scripts/dev-env" cluster-up >&2
  # shellcheck disable=SC1090
  . "$(dirname "$("$ROOT/scripts/dev-env" env-file)")/cluster.env.sh"
  broker="$FERRY_CLUSTER_BROKERS"
  args+=(--cluster)
fi
target_dir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | "$FERRY_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
FERRY_BIN="${FERRY_BIN:-$target_dir/release/ferry}"
if ((BUILD)); then
  (cd "$ROOT" && cargo build --release -p ferry >&2)
fi
[[ -x "$FERRY_BIN" ]] || { echo "chaos: no ferry binary at $FERRY_BIN (build it, or set FERRY_BIN)" >&2; exit 1; }
mkdir -p "$ROOT/benches/results"
kind=chaos
((CLUSTER)) && kind=chaos-cluster
out="${out:-$ROOT/benches/results/$kind-$(date -u +%Y-%m-%dT%H%M%S).md}"
exec "$FERRY_PYTHON" "$HERE/chaos.py" --ferry "$FERRY_BIN" --broker "$broker" --out "$out" "${args[@]}"
