#!/usr/bin/env bash
# Ferry's worker-group benchmark: aggregate backup throughput with 1, 2 and 3 workers and
# the failover time after a SIGKILL. See benches/workers.py for what it measures.
#   benches/workers.sh [--records N] [--partitions P] [--repeat R] [--failovers F] [--out FILE]
# Needs `scripts/dev-env up` and the release binary (built here unless FERRY_BIN is set).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck disable=SC1090
source "$("$ROOT/scripts/dev-env" env-file)"
if [[ -z "${FERRY_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release --locked -p ferry >&2)
  FERRY_BIN="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | "$FERRY_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/ferry"
fi
export FERRY_BIN
exec "$FERRY_PYTHON" "$HERE/workers.py" "$@"
