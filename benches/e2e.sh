#!/usr/bin/env bash
# Ferry's end-to-end benchmark (not a test): snapshot backup, restore and exports of one
# topic against kcat, in the same run, on the dev Kafka.
#
#   benches/e2e.sh [--records N] [--size BYTES] [--partitions P] [--repeat R]
#                  [--only GROUPS] [--values base64|json] [--no-build] [--keep] [--strict]
#                  [--out FILE]
#
# Env (flags win): RECORDS (1000000), SIZE (1024: bytes per line of the input file, newline
# included, so values are SIZE-1 bytes), PARTITIONS (6), REPEAT (1), FERRY_BIN (default:
# the release binary, built first unless --no-build), FERRY_BENCH_HOME (/var/tmp/ferry-bench:
# the cached input file and the run's scratch folder), FERRY_KAFKA / FERRY_KCAT /
# FERRY_PYTHON (default: from /var/tmp/ferry-dev/env.sh, written by `scripts/dev-env up`).
#
# Steps, each timed with /usr/bin/time (wall seconds, peak RSS, user+sys CPU) after a `sync`
# (so no step pays for writing back the previous step's output); with
# --repeat R the whole sequence runs R times (interleaved, so the steps share the machine's
# other load alike) and the table shows the median wall time and the largest RSS:
#   (setup)          kcat -P fills the source topic from the input file, not timed
#   kcat -C → file   read the topic from the beginning to EOF into a file
#   kcat -C → null   the same to /dev/null
#   ferry backup     --snapshot, raw format, to a fresh folder
#   kcat -P          produce the input file (one record a line) into a fresh scratch topic
#   ferry restore    the backup into a fresh topic (--rename); these two in turns: kcat -P
#                    first in odd rounds, the restore first in even ones
#   ferry backup     --format parquet, --format avro and --format iceberg (an Iceberg table
#                    on a SQLite catalog and a local warehouse), in an order that rotates
#                    each round
# --only GROUPS (comma-separated; default all): kcat (the two kcat -C steps), backup, restore
# (with kcat -P; needs backup), exports (parquet, avro), iceberg, recompress (raw backups with
# --recompress zstd and lz4, beside the plain raw one; their sizes are the point), encrypted
# (a raw backup with --encryption-key-file beside the plain one, and with restore its restore
# beside the plain restore: what encryption costs).
# --values (VALUES): base64 (default: random, barely compressible) or json (JSON documents of
# orders, padded to SIZE: text that compresses like real event payloads). E.g. the Iceberg benchmark:
# `benches/e2e.sh --repeat 3 --only kcat,exports,iceberg`.
# Cheap correctness checks: the source topic's end offsets sum to N; kcat's file has N
# lines; `ferry ls --json` counts N records in each backup; the restored topic's end
# offsets sum to N; pyiceberg finds N records and N as the sum of `ferry.offsets` in the
# Iceberg table's snapshot. A failed check aborts the run.
#
# Prints a Markdown table plus the issue's targets (met or MISSED) and writes them to
# benches/results/<date>.md (--out to choose). Exits 0 when every step ran, even when a
# target is missed, unless --strict. Topics and scratch folders are removed at the end
# (--keep leaves them); the generated input file stays cached for the next run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

RECORDS="${RECORDS:-1000000}"
SIZE="${SIZE:-1024}"
PARTITIONS="${PARTITIONS:-6}"
REPEAT="${REPEAT:-1}"
BUILD=1
KEEP=0
STRICT=0
OUT=""
ONLY="kcat,backup,restore,exports,iceberg"
VALUES="${VALUES:-base64}"
ARGS_GIVEN="$*"

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
  echo "e2e: ERROR: $*" >&2
  exit 1
}
log() { echo "e2e: $*" >&2; }

while (($#)); do
  case "$1" in
    --records) RECORDS="${2:?--records needs a value}"; shift 2 ;;
    --size) SIZE="${2:?--size needs a value}"; shift 2 ;;
    --partitions) PARTITIONS="${2:?--partitions needs a value}"; shift 2 ;;
    --repeat) REPEAT="${2:?--repeat needs a value}"; shift 2 ;;
    --out) OUT="${2:?--out needs a value}"; shift 2 ;;
    --only) ONLY="${2:?--only needs a value}"; shift 2 ;;
    --values) VALUES="${2:?--values needs a value}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --strict) STRICT=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

for v in RECORDS SIZE PARTITIONS REPEAT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a positive integer, got '${!v}'"
done
((RECORDS > 0)) || die "RECORDS must be > 0"
((SIZE >= 2)) || die "SIZE must be >= 2 (one byte of value plus the newline)"
((PARTITIONS > 0)) || die "PARTITIONS must be > 0"
((REPEAT > 0)) || die "REPEAT must be > 0"
for g in ${ONLY//,/ }; do
  [[ "$g" =~ ^(kcat|backup|restore|exports|iceberg|recompress|encrypted)$ ]] || die "--only: unknown group '$g' (kcat, backup, restore, exports, iceberg, recompress, encrypted)"
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
if wants restore && ! wants backup; then die "--only restore needs backup (it restores that backup)"; fi

# ------------------------------------------------------------------ environment

DEV_ENV="${FERRY_DEV_HOME:-/var/tmp/ferry-dev}/env.sh"
if [[ -z "${FERRY_KAFKA:-}" || -z "${FERRY_KCAT:-}" || -z "${FERRY_PYTHON:-}" ]]; then
  [[ -f "$DEV_ENV" ]] || die "FERRY_KAFKA/FERRY_KCAT/FERRY_PYTHON unset and no $DEV_ENV: run scripts/dev-env up"
  # shellcheck disable=SC1090
  source "$DEV_ENV"
fi
BROKERS="$FERRY_KAFKA"
KCAT="$FERRY_KCAT"
PY="$FERRY_PYTHON"
[[ -x "$KCAT" ]] || die "kcat not found at '$KCAT' (FERRY_KCAT)"
[[ -x "$PY" ]] || die "python not found at '$PY' (FERRY_PYTHON)"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"

if ! /usr/bin/time -f '%e' true 2>/dev/null >/dev/null; then
  log "installing GNU time (Debian package 'time')"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; } ||
    die "/usr/bin/time (GNU) missing and 'apt-get install time' failed"
fi

# What is measured: the commit and the work tree's state when the binary is built (other
# people may commit or edit while the run goes on).
describe_tree() {
  local rev dirty
  rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  dirty="$(git -C "$ROOT" status --porcelain --untracked-files=no -- . ':!benches' 2>/dev/null | wc -l)"
  if ((dirty)); then echo "$rev + $dirty uncommitted file(s) outside benches/"; else echo "$rev"; fi
}
TREE_AT_BUILD="$(describe_tree)"
if [[ -z "${FERRY_BIN:-}" ]]; then
  if ((BUILD)); then
    log "cargo build --release -p ferry"
    (cd "$ROOT" && cargo build --release -p ferry) >&2 || die "cargo build --release -p ferry failed"
  fi
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)" ||
    TARGET_DIR=/var/tmp/ferry-target
  FERRY_BIN="$TARGET_DIR/release/ferry"
fi
[[ -x "$FERRY_BIN" ]] || die "ferry binary not found at '$FERRY_BIN' (build it: cargo build --release -p ferry)"

"$KCAT" -b "$BROKERS" -L -m 10 >/dev/null 2>&1 || die "no Kafka at $BROKERS (scripts/dev-env up)"

BENCH_HOME="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
mkdir -p "$BENCH_HOME"
RUN_ID="$(date -u +%Y%m%d%H%M%S)-$$"
WORK="$BENCH_HOME/run-$RUN_ID"
mkdir -p "$WORK"
# A private copy: a rebuild of the shared target during the run must not change what runs.
cp "$FERRY_BIN" "$WORK/ferry"
FERRY_BIN_BUILT="$(date -u -r "$FERRY_BIN" '+%Y-%m-%d %H:%M:%S UTC')"
FERRY_BIN_ORIG="$FERRY_BIN"
FERRY_BIN="$WORK/ferry"
SRC_TOPIC="ferry-bench-src-$RUN_ID"
TOPICS_CREATED=()

cleanup() {
  local rc=$?
  if ((KEEP)); then
    log "kept: $WORK and topics: ${TOPICS_CREATED[*]:-none}"
  else
    if ((${#TOPICS_CREATED[@]})); then
      "$PY" "$HERE/kafka_admin.py" "$BROKERS" delete "${TOPICS_CREATED[@]}" ||
        log "warning: could not delete topics ${TOPICS_CREATED[*]}"
    fi
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

admin() { "$PY" "$HERE/kafka_admin.py" "$BROKERS" "$@"; }
create_topic() {
  TOPICS_CREATED+=("$1")
  admin create "$1" "$PARTITIONS" || die "could not create topic $1"
}
drop_topic() {
  admin delete "$1" || log "warning: could not delete topic $1"
}

# Sum of (latest - earliest) over the partitions of topic $1, from `ferry topics --json`.
topic_records() {
  "$FERRY_BIN" topics --brokers "$BROKERS" --json |
    jq --arg t "$1" '[.[] | select(.topic == $t) | .partitions[] | .latest - .earliest] | add // 0'
}
# Records a backup holds, from `ferry ls --json`.
backup_records() {
  "$FERRY_BIN" ls "$1" --json | jq '[.topics[].partitions[].records] | add // 0'
}
check_eq() { # what got want
  [[ "$2" == "$3" ]] || die "check failed: $1: got $2, want $3"
  log "check: $1 = $2"
}

# ------------------------------------------------------------------ input file

VALUE_LEN=$((SIZE - 1))
[[ "$VALUES" =~ ^(base64|json)$ ]] || die "--values must be base64 or json, got '$VALUES'"
INPUT="$BENCH_HOME/input-$RECORDS-$SIZE.txt"
[[ "$VALUES" == json ]] && INPUT="$BENCH_HOME/input-json-$RECORDS-$SIZE.txt"
WANT_BYTES=$((RECORDS * SIZE))
if [[ "$VALUES" == json && ( ! -f "$INPUT" || "$(stat -c %s "$INPUT")" != "$WANT_BYTES" ) ]]; then
  log "generating $INPUT: $RECORDS JSON order documents of $VALUE_LEN bytes"
  "$PY" - "$RECORDS" "$VALUE_LEN" "$INPUT.tmp" <<'PY' || die "generating the JSON input failed"
import json, random, sys
n, width, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(7)
statuses = ["created", "paid", "packed", "shipped", "delivered", "returned"]
letters = "abcdefghijklmnopqrstuvwxyz"
vocab = ["".join(rnd.choice(letters) for _ in range(rnd.randrange(3, 10))) for _ in range(500)]
with open(path, "w") as out:
    for i in range(n):
        doc = {"order": i, "customer": f"customer-{rnd.randrange(50000)}",
               "status": rnd.choice(statuses), "amount": round(rnd.uniform(1, 500), 2),
               "currency": "EUR", "items": [{"sku": f"sku-{rnd.randrange(2000)}", "qty": rnd.randrange(1, 5)}
                                            for _ in range(rnd.randrange(1, 4))],
               "note": ""}
        line = json.dumps(doc, separators=(",", ":"))
        pad = width - len(line)
        if pad < 0:
            raise SystemExit(f"SIZE too small for the JSON documents ({len(line) + 1} bytes needed)")
        # Free text from a vocabulary of 500 made-up words: compressible like prose, not
        # like a run of one letter.
        words, length = [], 0
        while length < pad + 1:
            w = vocab[rnd.randrange(len(vocab))]
            words.append(w)
            length += len(w) + 1
        note = " ".join(words)[:pad]
        doc["note"] = note + "x" * (pad - len(note))
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
PY
  [[ "$(stat -c %s "$INPUT.tmp")" == "$WANT_BYTES" ]] || die "generated input has the wrong size"
  mv "$INPUT.tmp" "$INPUT"
fi
if [[ ! -f "$INPUT" || "$(stat -c %s "$INPUT")" != "$WANT_BYTES" ]]; then
  log "generating $INPUT: $RECORDS lines of $VALUE_LEN random base64 characters"
  # Enough random bytes for RECORDS*VALUE_LEN base64 characters, wrapped into lines.
  raw=$(((RECORDS * VALUE_LEN * 3 + 3) / 4 + 3))
  { head -c "$raw" /dev/urandom | base64 -w "$VALUE_LEN" | head -n "$RECORDS" >"$INPUT.tmp"; } || true
  [[ "$(stat -c %s "$INPUT.tmp")" == "$WANT_BYTES" ]] || die "generated input has the wrong size"
  mv "$INPUT.tmp" "$INPUT"
fi

# ------------------------------------------------------------------ timing

declare -A WALLS RSS CPU OUTSIZE
STEPS=()

# timed STEP CMD...: runs CMD under /usr/bin/time (the caller's redirections apply to it),
# its stderr to $WORK/STEP.log; appends the wall time, keeps the largest RSS and CPU.
timed() {
  local step="$1"
  shift
  local tf="$WORK/time.$step"
  [[ -v "WALLS[$step]" ]] || STEPS+=("$step")
  # Each step starts with nothing left to write back: the previous step's output (a 1 GB
  # backup) flushing to disk meanwhile would slow whichever step comes next.
  sync
  local t0=$SECONDS
  if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" 2>>"$WORK/$step.log"; then
    echo "---- $WORK/$step.log (tail)" >&2
    tail -n 30 "$WORK/$step.log" >&2 || true
    die "step '$step' failed: $*"
  fi
  local e m u s
  read -r e m u s < <(tail -n 1 "$tf")
  WALLS[$step]="${WALLS[$step]:-} $e"
  local cpu
  cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  if [[ -z "${RSS[$step]:-}" ]] || ((m > RSS[$step])); then RSS[$step]=$m; fi
  CPU[$step]="${CPU[$step]:-} $cpu"
  log "$step: ${e}s wall, $((m / 1024)) MiB peak RSS, ${cpu}s CPU ($((SECONDS - t0))s)"
}

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------------ the run

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "ferry: $FERRY_BIN_ORIG ($TREE_AT_BUILD); kafka: $BROKERS; $RECORDS records x $SIZE bytes, $PARTITIONS partitions, repeat $REPEAT"

# One round runs every step once, so with --repeat the steps interleave and share whatever
# else the machine is doing. kcat -P and the restore write into scratch topics dropped at once.
ferry_backup() { # STEP FORMAT: a backup to a fresh folder, its records counted
  local step="$1" format="$2" dir="$WORK/backup-$2"
  rm -rf "$dir"
  timed "$step" "$FERRY_BIN" backup --brokers "$BROKERS" --topic "$SRC_TOPIC" --to "$dir" \
    --snapshot --format "$format"
  check_eq "records in the $format backup (ferry ls)" "$(backup_records "$dir")" "$RECORDS"
  OUTSIZE[$step]=$(du -sb "$dir" | cut -f1)
}

ferry_recompressed() { # STEP CODEC: a raw backup with --recompress CODEC, its records counted
  local step="$1" codec="$2" dir="$WORK/backup-raw-$2"
  rm -rf "$dir"
  timed "$step" "$FERRY_BIN" backup --brokers "$BROKERS" --topic "$SRC_TOPIC" --to "$dir" \
    --snapshot --recompress "$codec"
  check_eq "records in the $codec-recompressed backup (ferry ls)" "$(backup_records "$dir")" "$RECORDS"
  OUTSIZE[$step]=$(du -sb "$dir" | cut -f1)
  ((KEEP)) || rm -rf "$dir"
}

KEY_FILE="$WORK/bench.key"
ferry_encrypted() { # STEP: a raw backup encrypted with a fresh key, its records counted (ls needs no key)
  local step="$1" dir="$WORK/backup-raw-enc"
  rm -rf "$dir"
  [[ -e "$KEY_FILE" ]] || "$FERRY_BIN" keygen "$KEY_FILE" >/dev/null
  timed "$step" "$FERRY_BIN" backup --brokers "$BROKERS" --topic "$SRC_TOPIC" --to "$dir" \
    --snapshot --encryption-key-file "$KEY_FILE"
  check_eq "records in the encrypted backup (ferry ls)" "$(backup_records "$dir")" "$RECORDS"
  OUTSIZE[$step]=$(du -sb "$dir" | cut -f1)
}

ferry_iceberg() { # STEP: an Iceberg export to a fresh catalog and warehouse, checked by pyiceberg
  local step="$1" dir="$WORK/iceberg"
  rm -rf "$dir"
  mkdir -p "$dir"
  timed "$step" "$FERRY_BIN" backup --brokers "$BROKERS" --topic "$SRC_TOPIC" --snapshot \
    --format iceberg --catalog "sqlite://$dir/catalog.db" --to "$dir/warehouse" --table bench.events
  local counted
  counted=$("$PY" - "$dir" <<'PY'
import json, sys
from pyiceberg.catalog.sql import SqlCatalog
d = sys.argv[1]
t = SqlCatalog("ferry", uri=f"sqlite:///{d}/catalog.db", warehouse=f"file://{d}/warehouse").load_table("bench.events")
s = t.current_snapshot().summary.additional_properties
offsets = sum(sum(p.values()) for p in json.loads(s["ferry.offsets"]).values())
print(s["total-records"] if int(s["total-records"]) == offsets else f"{s['total-records']} records but offsets sum {offsets}")
PY
)
  check_eq "records in the Iceberg table (pyiceberg)" "$counted" "$RECORDS"
  OUTSIZE[$step]=$(du -sb "$dir/warehouse" | cut -f1)
}

# Setup, not timed: kcat -P fills the source topic every round reads.
create_topic "$SRC_TOPIC"
"$KCAT" -b "$BROKERS" -P -t "$SRC_TOPIC" -q <"$INPUT"
check_eq "records in $SRC_TOPIC after kcat -P" "$(topic_records "$SRC_TOPIC")" "$RECORDS"

restore_encrypted_step() { restore_step "$1" encrypted; }

kcat_produce_step() { # r: kcat -P of the input into a fresh scratch topic, dropped after
  local t="$SRC_TOPIC-p$1"
  create_topic "$t"
  timed kcat_produce "$KCAT" -b "$BROKERS" -P -t "$t" -q <"$INPUT"
  check_eq "records in $t after kcat -P" "$(topic_records "$t")" "$RECORDS"
  ((KEEP)) || drop_topic "$t"
}

restore_step() { # r [encrypted]: ferry restore of the raw backup (or the encrypted one) into a fresh topic, dropped after
  local dst="$SRC_TOPIC-restored-$1${2:+-enc}" state="$WORK/restore-state-$1${2:+-enc}" step=ferry_restore
  local from=("$WORK/backup-raw")
  [[ -n "${2:-}" ]] && { step=ferry_restore_encrypted; from=("$WORK/backup-raw-enc" --encryption-key-file "$KEY_FILE"); }
  TOPICS_CREATED+=("$dst")
  rm -rf "$state"
  timed "$step" "$FERRY_BIN" restore --from "${from[@]}" --brokers "$BROKERS" \
    --topic "$SRC_TOPIC" --rename "$SRC_TOPIC=$dst" --state "$state"
  check_eq "records in $dst after ferry restore" "$(topic_records "$dst")" "$RECORDS"
  if ((!KEEP)); then
    drop_topic "$dst"
    rm -rf "$state"
  fi
}

for ((r = 1; r <= REPEAT; r++)); do
  ((REPEAT == 1)) || log "round $r of $REPEAT"
  if wants kcat; then
    out="$WORK/kcat-out.txt"
    timed kcat_consume_file "$KCAT" -b "$BROKERS" -C -t "$SRC_TOPIC" -o beginning -e -q >"$out"
    check_eq "lines read by kcat -C" "$(wc -l <"$out")" "$RECORDS"
    OUTSIZE[kcat_consume_file]=$(stat -c %s "$out")
    rm -f "$out"

    timed kcat_consume_null "$KCAT" -b "$BROKERS" -C -t "$SRC_TOPIC" -o beginning -e -q >/dev/null
  fi

  if wants backup || wants recompress || wants encrypted; then
    # In turns with the encrypted backup, so neither always runs first.
    if wants encrypted && ! ((r % 2)); then ferry_encrypted ferry_backup_encrypted; fi
    ferry_backup ferry_backup_raw raw
    if wants encrypted && ((r % 2)); then ferry_encrypted ferry_backup_encrypted; fi
  fi
  if wants recompress; then
    # In turns, so neither codec always follows the plain backup.
    if ((r % 2)); then
      ferry_recompressed ferry_backup_zstd zstd
      ferry_recompressed ferry_backup_lz4 lz4
    else
      ferry_recompressed ferry_backup_lz4 lz4
      ferry_recompressed ferry_backup_zstd zstd
    fi
  fi

  # The two produce-side steps, right after the 1 GB backup, in alternating order: whichever
  # runs second follows the other's 1 GB write, and on this machine that costs it (see
  # restore_vs_kcat.sh), so neither may always take that place.
  if wants restore; then
    produce_steps=(kcat_produce_step restore_step)
    wants encrypted && produce_steps+=(restore_encrypted_step)
    n=${#produce_steps[@]}
    for ((i = 0; i < n; i++)); do
      "${produce_steps[$(((i + r - 1) % n))]}" "$r"
    done
  fi
  ((KEEP)) || rm -rf "$WORK/backup-raw" "$WORK/backup-raw-enc"

  # The export steps in an order that rotates each round, so none always follows another.
  exports=()
  wants exports && exports+=(parquet avro)
  wants iceberg && exports+=(iceberg)
  n=${#exports[@]}
  for ((i = 0; i < n; i++)); do
    case "${exports[$(((i + r - 1) % n))]}" in
      parquet) ferry_backup ferry_backup_parquet parquet ;;
      avro) ferry_backup ferry_backup_avro avro ;;
      iceberg) ferry_iceberg ferry_backup_iceberg ;;
    esac
  done
  ((KEEP)) || rm -rf "$WORK/backup-parquet" "$WORK/backup-avro" "$WORK/iceberg"
done

# ------------------------------------------------------------------ report

declare -A LABEL=(
  [kcat_produce]="kcat -P (produce)"
  [kcat_consume_file]="kcat -C -e -o beginning → file"
  [kcat_consume_null]="kcat -C -e -o beginning → /dev/null"
  [ferry_backup_raw]="ferry backup --snapshot (raw)"
  [ferry_restore]="ferry restore (into a new topic)"
  [ferry_backup_parquet]="ferry backup --snapshot --format parquet"
  [ferry_backup_avro]="ferry backup --snapshot --format avro"
  [ferry_backup_iceberg]="ferry backup --snapshot --format iceberg"
  [ferry_backup_zstd]="ferry backup --snapshot --recompress zstd"
  [ferry_backup_lz4]="ferry backup --snapshot --recompress lz4"
  [ferry_backup_encrypted]="ferry backup --snapshot --encryption-key-file (raw)"
  [ferry_restore_encrypted]="ferry restore --encryption-key-file (into a new topic)"
)
declare -A MED
for s in "${STEPS[@]}"; do MED[$s]=$(median "${WALLS[$s]}"); done
MB=$(awk -v n="$RECORDS" -v s="$SIZE" 'BEGIN { printf "%.1f", n * s / 1e6 }')

fmt_mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

MISSED=0
target() { # description ok(0/1) detail
  local mark="met"
  if [[ "$2" != 1 ]]; then
    mark="**MISSED**"
    MISSED=$((MISSED + 1))
  fi
  echo "| $1 | $3 | $mark |"
}
ok() { if "$@"; then echo 1; else echo 0; fi; }

REPORT="$WORK/report.md"
{
  echo "# Ferry end-to-end benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  value_kind="random base64 bytes"
  [[ "$VALUES" == json ]] && value_kind="bytes of JSON order documents"
  echo "$RECORDS records × $SIZE bytes (values of $VALUE_LEN $value_kind, no keys," \
    "$MB MB of payload), $PARTITIONS partitions, single-node Kafka on 127.0.0.1, uncompressed;" \
    "each step run $REPEAT× (median wall time, largest peak RSS)."
  echo
  runs_h="" runs_sep=""
  if ((REPEAT > 1)); then runs_h=" wall s of each round |" runs_sep="---|"; fi
  echo "| step | wall s | MB/s | records/s | peak RSS MiB | CPU s (user+sys) | output MiB |$runs_h"
  echo "|---|---:|---:|---:|---:|---:|---:|$runs_sep"
  for s in "${STEPS[@]}"; do
    w="${MED[$s]}"
    mbs=$(awk -v m="$MB" -v w="$w" 'BEGIN { if (w > 0) printf "%.1f", m / w; else print "-" }')
    rps=$(awk -v n="$RECORDS" -v w="$w" 'BEGIN { if (w > 0) printf "%d", n / w; else print "-" }')
    out="-"
    [[ -n "${OUTSIZE[$s]:-}" ]] && out=$(fmt_mb "${OUTSIZE[$s]}")
    runs=""
    ((REPEAT == 1)) || runs=" $(echo ${WALLS[$s]} | sed 's/ /, /g') |"
    echo "| ${LABEL[$s]} | $w | $mbs | $rps | $(fmt_mb $((RSS[$s] * 1024))) | $(median "${CPU[$s]}") | $out |$runs"
  done
  echo
  echo "Targets (against kcat in this run):"
  echo
  echo "| target | measured | |"
  echo "|---|---|---|"
  kf="${MED[kcat_consume_file]:-}"
  if [[ -n "$kf" && -n "${MED[ferry_backup_raw]:-}" ]]; then
    target "backup ≥ 1.5× faster than kcat -C → file" \
      "$(ok le 1.5 "$(ratio "$kf" "${MED[ferry_backup_raw]}")")" \
      "$(ratio "$kf" "${MED[ferry_backup_raw]}")× (${MED[ferry_backup_raw]} s vs $kf s)"
  fi
  if [[ -n "${MED[ferry_restore]:-}" ]]; then
    target "restore at least as fast as kcat -P" \
      "$(ok le "${MED[ferry_restore]}" "${MED[kcat_produce]}")" \
      "$(ratio "${MED[kcat_produce]}" "${MED[ferry_restore]}")× (${MED[ferry_restore]} s vs ${MED[kcat_produce]} s)"
  fi
  for s in ferry_backup_raw ferry_restore; do
    [[ -n "${RSS[$s]:-}" ]] || continue
    target "${LABEL[$s]}: peak RSS < 256 MiB" "$(ok lt "${RSS[$s]}" $((256 * 1024)))" "$(fmt_mb $((RSS[$s] * 1024))) MiB"
  done
  for s in ferry_backup_parquet ferry_backup_avro ferry_backup_iceberg; do
    [[ -n "${MED[$s]:-}" ]] || continue
    if [[ -n "$kf" ]]; then
      target "${LABEL[$s]}: at least as fast as kcat -C → file" "$(ok le "${MED[$s]}" "$kf")" \
        "$(ratio "$kf" "${MED[$s]}")× (${MED[$s]} s vs $kf s)"
    fi
    target "${LABEL[$s]}: peak RSS < 512 MiB" "$(ok lt "${RSS[$s]}" $((512 * 1024)))" "$(fmt_mb $((RSS[$s] * 1024))) MiB"
  done
  for s in ferry_backup_zstd ferry_backup_lz4; do
    [[ -n "${MED[$s]:-}" && -n "${OUTSIZE[ferry_backup_raw]:-}" ]] || continue
    echo "| ${LABEL[$s]} (information): stored size and time next to the plain raw backup | $(ratio "${OUTSIZE[$s]}" "${OUTSIZE[ferry_backup_raw]}")× the bytes, $(ratio "${MED[ferry_backup_raw]}" "${MED[$s]}")× the speed (${MED[$s]} s vs ${MED[ferry_backup_raw]} s) | |"
  done
  for pair in ferry_backup_encrypted:ferry_backup_raw ferry_restore_encrypted:ferry_restore; do
    s="${pair%%:*}" plain="${pair##*:}"
    [[ -n "${MED[$s]:-}" && -n "${MED[$plain]:-}" ]] || continue
    echo "| ${LABEL[$s]} (information): next to the plain one | $(ratio "${MED[$plain]}" "${MED[$s]}")× the speed (${MED[$s]} s vs ${MED[$plain]} s), $(ratio "$(median "${CPU[$s]}")" "$(median "${CPU[$plain]}")")× the CPU, peak RSS $(fmt_mb $((RSS[$s] * 1024))) vs $(fmt_mb $((RSS[$plain] * 1024))) MiB | |"
  done
  if [[ -n "${MED[ferry_backup_iceberg]:-}" && -n "${MED[ferry_backup_parquet]:-}" ]]; then
    echo "| Iceberg export next to the Parquet export (information) | $(ratio "${MED[ferry_backup_parquet]}" "${MED[ferry_backup_iceberg]}")× (${MED[ferry_backup_iceberg]} s vs ${MED[ferry_backup_parquet]} s) | |"
  fi
  echo
  echo "Checks passed: the source topic and every output of the steps run (kcat's file, \`ferry ls --json\` of each backup, the restored topic, pyiceberg's count of the Iceberg table) hold $RECORDS records."
  echo
  echo "Command: \`benches/e2e.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\`"
  echo "ferry: $FERRY_BIN_ORIG built $FERRY_BIN_BUILT; tree before the build: $TREE_AT_BUILD;" \
    "$("$KCAT" -V 2>/dev/null | grep -o 'Version [^ ]*' | head -1 | sed 's/Version/kcat/')," \
    "librdkafka $("$KCAT" -V 2>/dev/null | grep -o 'librdkafka [^ ]*' | head -1 | cut -d' ' -f2);" \
    "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(uname -sr);" \
    "load average $LOAD_START before the run (other work on the machine), $(cut -d' ' -f1-3 /proc/loadavg) after."
} >"$REPORT"

cat "$REPORT"
if [[ -z "$OUT" ]]; then
  mkdir -p "$HERE/results"
  OUT="$HERE/results/$(date -u +%Y-%m-%d).md"
  [[ -e "$OUT" ]] && OUT="$HERE/results/$(date -u +%Y-%m-%dT%H%M).md"
fi
cp "$REPORT" "$OUT"
log "written to $OUT"
if ((MISSED)); then
  log "$MISSED target(s) missed"
  ((STRICT)) && exit 2
fi
exit 0
