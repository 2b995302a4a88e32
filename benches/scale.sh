#!/usr/bin/env bash
# Ferry's scale benchmark (not a test): how backup, restore and Parquet export grow with
# the record count, the partition count and the record size, next to kcat doing the same
# jobs in the same run, on the dev Kafka (`scripts/dev-env up`). Same method as e2e.sh:
# every step timed by /usr/bin/time after a `sync`, kcat and Ferry in turns, medians of
# REPEAT rounds, cheap correctness checks (a failed one aborts the run).
#
#   benches/scale.sh [--no-build] [--keep] [--out FILE]
#
# Scenarios (each a fresh set of topics filled by kcat -P from a generated input file; sizes
# by env, so a small run is possible):
#   records   SCALE_RECORDS (default "1000000 5000000 10000000") records of SCALE_SIZE
#             (1024) bytes on 6 partitions: time per GB and peak RSS as the data grows;
#   partitions SCALE_PARTITIONS (default "6 60 600 6000") partitions holding the same
#             SCALE_PART_RECORDS (1000000) records of SCALE_SIZE bytes; above 60 partitions
#             the topics have 60 partitions each (6000 = 100 topics × 60);
#   large     SCALE_LARGE (default "100x10485760"): COUNTxBYTES, 6 partitions;
#   small     SCALE_SMALL (default "10000000x100"): COUNTxBYTES, 6 partitions.
#   Set a variable to "" to skip its scenarios; SCALE_ONLY="partitions-6000 large" runs
#   only the named ones (names as in the report).
# Steps per round (REPEAT, default 3; the 6000-partition scenario uses SCALE_REPEAT_6000,
# default REPEAT): kcat -C → /dev/null, kcat -C → file, ferry backup --snapshot (raw; the
# time its first segment manifest appeared is recorded too), then kcat -P into fresh topics
# and ferry restore of the backup into fresh topics in turns (kcat first in odd rounds),
# then the exports (SCALE_EXPORTS, default "parquet avro": ferry backup --snapshot --format
# F each). Several topics are read by kcat as one balanced consumer (-G, a regex
# subscription) and produced by one kcat -P per topic.
# BUSY=1 runs a second CPU-bound process (a fixed-size gzip loop) beside every step.
#
# Env: FERRY_BIN (default: the release binary, built unless --no-build), FERRY_BENCH_HOME
# (/var/tmp/ferry-bench: cached input files, scratch), FERRY_KAFKA / FERRY_KCAT /
# FERRY_PYTHON (default: /var/tmp/ferry-dev/env.sh). Writes a Markdown report to
# benches/results/scale-<date>.md (--out to choose). Disk: about 4× the largest scenario's
# bytes (input, topic, backup, restored topic).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SCALE_RECORDS="${SCALE_RECORDS-1000000 5000000 10000000}"
SCALE_SIZE="${SCALE_SIZE:-1024}"
SCALE_PARTITIONS="${SCALE_PARTITIONS-6 60 600 6000}"
SCALE_PART_RECORDS="${SCALE_PART_RECORDS:-1000000}"
SCALE_LARGE="${SCALE_LARGE-100x10485760}"
SCALE_SMALL="${SCALE_SMALL-10000000x100}"
SCALE_ONLY="${SCALE_ONLY:-}"
SCALE_EXPORTS="${SCALE_EXPORTS-parquet avro}"
REPEAT="${REPEAT:-3}"
SCALE_REPEAT_6000="${SCALE_REPEAT_6000:-$REPEAT}"
BUSY="${BUSY:-0}"
BUILD=1
KEEP=0
OUT=""
ARGS_GIVEN="$*"

usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
  echo "scale: ERROR: $*" >&2
  [[ -n "${WORK:-}" && -d "$WORK" ]] && echo "$*" | cut -c1-300 >"$WORK/last_error"
  exit 1
}
log() { echo "scale: $(date -u +%H:%M:%S) $*" >&2; }

while (($#)); do
  case "$1" in
    --out) OUT="${2:?--out needs a value}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"

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
/usr/bin/time -f '%e' true >/dev/null 2>&1 || die "GNU time is needed (apt-get install time)"

TREE="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ -z "${FERRY_BIN:-}" ]]; then
  if ((BUILD)); then
    log "cargo build --release -p ferry"
    (cd "$ROOT" && cargo build --release -p ferry) >&2 || die "cargo build --release -p ferry failed"
  fi
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)"
  FERRY_BIN="$TARGET_DIR/release/ferry"
fi
[[ -x "$FERRY_BIN" ]] || die "ferry binary not found at '$FERRY_BIN'"
"$KCAT" -b "$BROKERS" -L -m 10 >/dev/null 2>&1 || die "no Kafka at $BROKERS (scripts/dev-env up)"
# The largest partition count of a scenario exists three times at once at worst (the source,
# kcat's copy, the restored copy, while deleted topics' files wait to be removed), and the dev
# broker's open-file limit (20,000 here) counts every partition it holds: topics left by
# test runs are refused up front rather than failing a step half-way.
max_parts=0
for p in $SCALE_PARTITIONS; do ((p > max_parts)) && max_parts=$p; done
held="$("$KCAT" -b "$BROKERS" -L -J -m 30 2>/dev/null | jq '[.topics[].partitions | length] | add // 0')" || held=0
if ((max_parts >= 600 && held + 3 * max_parts > 19000)); then
  die "the broker at $BROKERS already holds $held partitions; with $max_parts-partition scenarios it would pass its open-file limit: start from an empty broker (scripts/dev-env reset && scripts/dev-env up)"
fi

BENCH_HOME="${FERRY_BENCH_HOME:-/var/tmp/ferry-bench}"
mkdir -p "$BENCH_HOME"
RUN_ID="$(date -u +%H%M%S)$$"
WORK="$BENCH_HOME/scale-$RUN_ID"
mkdir -p "$WORK"
cp "$FERRY_BIN" "$WORK/ferry"
FERRY_BIN_BUILT="$(date -u -r "$FERRY_BIN" '+%Y-%m-%d %H:%M:%S UTC')"
FERRY_BIN_ORIG="$FERRY_BIN"
FERRY="$WORK/ferry"
# Topics made by the run (a file: scenarios run in subshells), deleted at the end.
TOPICS_FILE="$WORK/topics.txt"
: >"$TOPICS_FILE"
# Every measurement as a line "key<TAB>wall<TAB>rss KiB<TAB>cpu", scenario facts as
# "SC<TAB>name<TAB>bytes<TAB>records<TAB>partitions", failures as "FAIL<TAB>name<TAB>why".
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
BUSY_PID=""

admin() { "$PY" "$HERE/kafka_admin.py" "$BROKERS" "$@"; }
cleanup() {
  local rc=$?
  [[ -n "$BUSY_PID" ]] && kill "$BUSY_PID" 2>/dev/null
  if ((KEEP)); then
    log "kept: $WORK and $(wc -l <"$TOPICS_FILE") topic(s)"
  else
    if [[ -s "$TOPICS_FILE" ]]; then
      mapfile -t all <"$TOPICS_FILE"
      admin delete "${all[@]}" || log "warning: could not delete topics"
    fi
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ((BUSY)); then
  # The second CPU-bound process: compress the same 64 MiB again and again.
  head -c $((64 << 20)) /dev/urandom >"$WORK/busy.bin"
  (while :; do gzip -6 -c "$WORK/busy.bin" >/dev/null; done) &
  BUSY_PID=$!
  log "busy loop running (pid $BUSY_PID)"
fi

check_eq() { # what got want
  [[ "$2" == "$3" ]] || die "check failed: $1: got $2, want $3"
  log "check: $1 = $2"
}
# Records in the topics matching regex $1 (sum of latest - earliest).
topic_records() {
  "$FERRY" topics --brokers "$BROKERS" --json |
    jq --arg re "^($1)\$" '[.[] | select(.topic | test($re)) | .partitions[] | .latest - .earliest] | add // 0'
}
backup_records() { "$FERRY" ls "$1" --json | jq '[.topics[].partitions[].records] | add // 0'; }

# input COUNT BYTES: a cached file of COUNT lines of BYTES-1 random base64 characters.
input() {
  local n="$1" b="$2" f="$BENCH_HOME/input-$1-$2.txt"
  if [[ ! -f "$f" || "$(stat -c %s "$f")" != "$((n * b))" ]]; then
    log "generating $f"
    local raw=$(((n * (b - 1) * 3 + 3) / 4 + 3))
    { head -c "$raw" /dev/urandom | base64 -w "$((b - 1))" | head -n "$n" >"$f.tmp"; } || true
    [[ "$(stat -c %s "$f.tmp")" == "$((n * b))" ]] || die "generated input $f has the wrong size"
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}

# ------------------------------------------------------------------ timing


# timed KEY CMD...: KEY is "scenario|step"; wall, peak RSS and CPU of each round kept.
timed() {
  local key="$1"
  shift
  local tf="$WORK/time.out"
  sync
  if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" 2>>"$WORK/step.log"; then
    tail -n 30 "$WORK/step.log" >&2 || true
    die "step '$key' failed: $*"
  fi
  local e m u s
  read -r e m u s < <(tail -n 1 "$tf")
  printf '%s\t%s\t%s\t%s\n' "$key" "$e" "$m" "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')" >>"$RESULTS"
  log "$key: ${e}s wall, $((m / 1024)) MiB peak RSS"
}
median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------------ one scenario

# create_set PARTITIONS BYTES TOPIC...: topics for records of BYTES (a larger
# max.message.bytes when records pass 1 MB).
create_set() {
  local parts="$1" b="$2"
  shift 2
  if ((b > 1000000)); then
    for t in "$@"; do admin create "$t" "$parts" "max.message.bytes=$((b + 1048576))" || die "creating $t"; done
  else
    admin create-many "$parts" "$@" || die "creating topics"
  fi
}

# One kcat -P per topic (part i of the input into PREFIX-t<i>): a program, so
# /usr/bin/time can run it.
cat >"$WORK/produce.sh" <<'EOF'
#!/usr/bin/env bash
# produce.sh KCAT BROKERS PREFIX PARTS_DIR [kcat options...]
set -euo pipefail
kcat=$1 brokers=$2 prefix=$3 dir=$4
shift 4
i=0
for f in "$dir"/p*; do
  "$kcat" -b "$brokers" -P "$@" -t "$prefix-t$i" -q <"$f"
  i=$((i + 1))
done
EOF
chmod +x "$WORK/produce.sh"

# create.sh PY ADMIN BROKERS PARTITIONS BYTES TOPIC...: creates kcat's target topics, as
# create_set does, as one program (so /usr/bin/time can time it): a restore creates its
# topics inside its timed step, so kcat's side is timed with its creation too.
cat >"$WORK/create.sh" <<'EOS'
#!/usr/bin/env bash
set -euo pipefail
py=$1 admin=$2 brokers=$3 parts=$4 b=$5
shift 5
if ((b > 1000000)); then
  for t in "$@"; do "$py" "$admin" "$brokers" create "$t" "$parts" "max.message.bytes=$((b + 1048576))"; done
else
  "$py" "$admin" "$brokers" create-many "$parts" "$@"
fi
EOS
chmod +x "$WORK/create.sh"


# scenario NAME COUNT BYTES PARTITIONS
scenario() {
  local name="$1" n="$2" b="$3" parts="$4"
  if [[ -n "$SCALE_ONLY" && " $SCALE_ONLY " != *" $name "* ]]; then return; fi
  local per_topic=$parts topics=1
  if ((parts > 60)); then
    per_topic=60
    topics=$((parts / 60))
  fi
  local repeat=$REPEAT
  ((parts >= 6000)) && repeat=$SCALE_REPEAT_6000
  local in
  in="$(input "$n" "$b")"
  printf 'SC\t%s\t%s\t%s\t%s\n' "$name" $((n * b)) "$n" "$parts ($topics × $per_topic)" >>"$RESULTS"
  local base="fs$RUN_ID-$name"
  local re="$base-t[0-9]+"
  local names=()
  for ((i = 0; i < topics; i++)); do names+=("$base-t$i"); done
  log "== $name: $n × $b bytes, $topics topic(s) × $per_topic partitions, $repeat round(s)"
  printf '%s\n' "${names[@]}" >>"$TOPICS_FILE"
  local cfg=()
  ((b > 1000000)) && cfg=(-X "message.max.bytes=$((b + 1048576))")
  create_set "$per_topic" "$b" "${names[@]}"
  # One input part per topic.
  local parts_dir="$WORK/parts-$name"
  mkdir -p "$parts_dir"
  if ((topics == 1)); then ln -sf "$in" "$parts_dir/p000"; else split -n "l/$topics" -d -a 3 "$in" "$parts_dir/p"; fi
  "$WORK/produce.sh" "$KCAT" "$BROKERS" "$base" "$parts_dir" "${cfg[@]}"
  check_eq "$name: records in the source topics" "$(topic_records "$re")" "$n"

  local consume=()
  if ((topics == 1)); then
    consume=("$KCAT" -b "$BROKERS" -C -t "$base-t0" -o beginning -e -q)
  fi
  for ((r = 1; r <= repeat; r++)); do
    log "$name: round $r of $repeat"
    # A fresh group each time: a group resumes where the previous read stopped.
    ((topics > 1)) && consume=("$KCAT" -b "$BROKERS" -G "fs$RUN_ID-$name-$r-null" -X auto.offset.reset=earliest -e -q "^$re\$")
    timed "$name|kcat_null" "${consume[@]}" >/dev/null
    ((topics > 1)) && consume=("$KCAT" -b "$BROKERS" -G "fs$RUN_ID-$name-$r-file" -X auto.offset.reset=earliest -e -q "^$re\$")
    timed "$name|kcat_file" "${consume[@]}" >"$WORK/kcat.out"
    check_eq "$name: lines read by kcat" "$(wc -l <"$WORK/kcat.out")" "$n"
    rm -f "$WORK/kcat.out"
    # The raw backup, and when its first segment was committed: the earliest
    # `written_at_ms` of its manifests, from the step's start (read after the step, so
    # nothing polls the folder while it runs).
    local dir="$WORK/backup-$name"
    rm -rf "$dir"
    local t0
    t0=$(date +%s%3N)
    timed "$name|ferry_backup" "$FERRY" backup --brokers "$BROKERS" --topic "/$re/" --to "$dir" --snapshot
    local first_ms
    first_ms=$(find "$dir/topics" -mindepth 3 -name '*.json' -print0 | xargs -0 cat | jq -s 'map(.written_at_ms) | min')
    printf '%s\t%s\t0\t0\n' "$name|first_segment" "$(awk -v a="$t0" -v b="$first_ms" 'BEGIN { printf "%.2f", (b - a) / 1000 }')" >>"$RESULTS"
    check_eq "$name: records in the raw backup" "$(backup_records "$dir")" "$n"

    local kt="fs$RUN_ID-$name-k$r" rt="fs$RUN_ID-$name-r$r"
    local renames=()
    for ((i = 0; i < topics; i++)); do
      renames+=(--rename "$base-t$i=$rt-t$i")
      printf '%s\n' "$kt-t$i" "$rt-t$i" >>"$TOPICS_FILE"
    done
    kcat_step() {
      local kn=()
      for ((i = 0; i < topics; i++)); do kn+=("$kt-t$i"); done
      timed "$name|kcat_create" "$WORK/create.sh" "$PY" "$HERE/kafka_admin.py" "$BROKERS" "$per_topic" "$b" "${kn[@]}"
      timed "$name|kcat_produce" "$WORK/produce.sh" "$KCAT" "$BROKERS" "$kt" "$parts_dir" "${cfg[@]}"
      check_eq "$name: records after kcat -P" "$(topic_records "$kt-t[0-9]+")" "$n"
      # Dropped at once: the source, kcat's copy and the restored copy of 6,000
      # partitions together (18,000) took the dev broker past its open-file limit.
      ((KEEP)) || admin delete "${kn[@]}" || true
    }
    restore_step() {
      timed "$name|ferry_restore" "$FERRY" restore --from "$dir" --brokers "$BROKERS" \
        --topic "/$re/" "${renames[@]}" --state "$WORK/state-$name-$r"
      check_eq "$name: records after ferry restore" "$(topic_records "$rt-t[0-9]+")" "$n"
      if ((!KEEP)); then
        local rn=()
        for ((i = 0; i < topics; i++)); do rn+=("$rt-t$i"); done
        admin delete "${rn[@]}" || true
      fi
    }
    if ((r % 2)); then kcat_step; restore_step; else restore_step; kcat_step; fi
    ((KEEP)) || rm -rf "$dir" "$WORK/state-$name-$r"
    local fmt ex
    for fmt in $SCALE_EXPORTS; do
      ex="$WORK/$fmt-$name"
      rm -rf "$ex"
      timed "$name|ferry_$fmt" "$FERRY" backup --brokers "$BROKERS" --topic "/$re/" --to "$ex" --snapshot --format "$fmt"
      check_eq "$name: records in the $fmt export" "$(backup_records "$ex")" "$n"
      rm -rf "$ex"
    done
  done
  ((KEEP)) || { admin delete "${names[@]}" || true; rm -rf "$parts_dir"; }
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
UPTIME_START="$(uptime)"
log "ferry: $FERRY_BIN_ORIG ($TREE); load: $LOAD_START"

# Each scenario in a subshell: a failed step or check ends that scenario (recorded in the
# report), not the run.
run() {
  rm -f "$WORK/last_error"
  (scenario "$@") && return 0
  printf 'FAIL\t%s\t%s; last log line: %s\n' "$1" "$(cat "$WORK/last_error" 2>/dev/null)" \
    "$(grep -v '^\s*$' "$WORK/step.log" 2>/dev/null | tail -n 1 | cut -c1-300)" >>"$RESULTS"
  log "scenario $1 FAILED; going on"
}
for n in $SCALE_RECORDS; do run "records-$n" "$n" "$SCALE_SIZE" 6; done
for p in $SCALE_PARTITIONS; do run "partitions-$p" "$SCALE_PART_RECORDS" "$SCALE_SIZE" "$p"; done
for s in $SCALE_LARGE; do run "large-${s%x*}x${s#*x}" "${s%x*}" "${s#*x}" 6; done
for s in $SCALE_SMALL; do run "small-${s%x*}x${s#*x}" "${s%x*}" "${s#*x}" 6; done

# Back from the file into arrays for the report.
declare -A WALLS RSS CPU SC_BYTES SC_RECORDS SC_PARTS FAILED
ROWS=()
SCENARIOS=()
while IFS=$'\t' read -r k a b c d; do
  case "$k" in
    SC) SCENARIOS+=("$a"); SC_BYTES[$a]=$b; SC_RECORDS[$a]=$c; SC_PARTS[$a]=$d ;;
    FAIL) FAILED[$a]="$b" ;;
    *)
      [[ -v "WALLS[$k]" ]] || ROWS+=("$k")
      WALLS[$k]="${WALLS[$k]:-} $a"
      CPU[$k]="${CPU[$k]:-} $c"
      if [[ -z "${RSS[$k]:-}" ]] || ((b > RSS[$k])); then RSS[$k]=$b; fi
      ;;
  esac
done <"$RESULTS"

# ------------------------------------------------------------------ report

# A step that did not run (its scenario failed before it) shows as "-".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f×", a / b; else print "-" }'; }
mib() { awk -v k="$1" 'BEGIN { if (k > 0) printf "%.0f", k / 1024; else print "-" }'; }
s_per_gb() { awk -v w="$1" -v by="$2" 'BEGIN { if (w != "-") printf "%.2f", w / (by / 1e9); else print "-" }'; }
med() {
  local m
  m=$(median "${WALLS[$1]:-}")
  echo "${m:--}"
}

REPORT="$WORK/report.md"
{
  echo "# Ferry scale benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Single-node Kafka 4.4 on 127.0.0.1, uncompressed, values of random base64 bytes, no keys;" \
    "each step's median wall time over its rounds (kcat and Ferry in turns), largest peak RSS." \
    "Ratios are kcat's time over Ferry's (> 1: Ferry faster). BUSY=$BUSY."
  echo
  echo "| scenario | partitions | records | GB | backup s (s/GB) | kcat→null s | backup vs kcat→null | restore s | kcat -P s | restore vs kcat -P | create + kcat -P s | restore vs create + kcat -P | parquet s | kcat→file s | parquet vs kcat→file | avro s | avro vs kcat→file | RSS MiB backup / restore / parquet / avro | first segment s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
  for sc in "${SCENARIOS[@]}"; do
    by=${SC_BYTES[$sc]}
    bk=$(med "$sc|ferry_backup") knull=$(med "$sc|kcat_null") kf=$(med "$sc|kcat_file")
    r=$(med "$sc|ferry_restore") kp=$(med "$sc|kcat_produce") pq=$(med "$sc|ferry_parquet") av=$(med "$sc|ferry_avro")
    first=$(median "${WALLS[$sc|first_segment]:-}")
    kc=$(med "$sc|kcat_create")
    kcp=$(awk -v a="$kc" -v b="$kp" 'BEGIN { if (a != "-" && b != "-") printf "%.2f", a + b; else print "-" }')
    echo "| $sc | ${SC_PARTS[$sc]} | ${SC_RECORDS[$sc]} | $(awk -v b="$by" 'BEGIN { printf "%.2f", b / 1e9 }') |" \
      "$bk ($(s_per_gb "$bk" "$by")) | $knull | $(ratio "$knull" "$bk") | $r | $kp | $(ratio "$kp" "$r") | $kcp | $(ratio "$kcp" "$r") | $pq | $kf | $(ratio "$kf" "$pq") | $av | $(ratio "$kf" "$av") |" \
      "$(mib "${RSS[$sc|ferry_backup]:-0}") / $(mib "${RSS[$sc|ferry_restore]:-0}") / $(mib "${RSS[$sc|ferry_parquet]:-0}") / $(mib "${RSS[$sc|ferry_avro]:-0}") | ${first:--} |"
  done
  echo
  echo "Wall seconds of every round:"
  echo
  for sc in "${!FAILED[@]}"; do echo "**$sc FAILED** (figures of its finished steps are above): \`${FAILED[$sc]}\`"; echo; done
  for k in "${ROWS[@]}"; do echo "- $k:$(sed 's/ /, /g; s/^,//' <<<"${WALLS[$k]}") (CPU s:$(sed 's/ /, /g; s/^,//' <<<"${CPU[$k]}"))"; done
  echo
  echo "Checks passed: every source topic set, kcat's file, every backup and export (\`ferry ls --json\`) and every restored and kcat-produced topic set hold the scenario's record count."
  echo
  echo "Command: \`SCALE_RECORDS=\"$SCALE_RECORDS\" SCALE_SIZE=$SCALE_SIZE SCALE_PARTITIONS=\"$SCALE_PARTITIONS\" SCALE_PART_RECORDS=$SCALE_PART_RECORDS SCALE_LARGE=\"$SCALE_LARGE\" SCALE_SMALL=\"$SCALE_SMALL\" SCALE_EXPORTS=\"$SCALE_EXPORTS\" SCALE_ONLY=\"$SCALE_ONLY\" REPEAT=$REPEAT SCALE_REPEAT_6000=$SCALE_REPEAT_6000 BUSY=$BUSY benches/scale.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\`"
  echo
  echo "ferry: $FERRY_BIN_ORIG built $FERRY_BIN_BUILT (tree $TREE);" \
    "$("$KCAT" -V 2>/dev/null | grep -o 'Version [^ ]*' | head -1 | sed 's/Version/kcat/');" \
    "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(uname -sr)."
  echo "Before the run: \`$UPTIME_START\`; after: \`$(uptime)\`."
} >"$REPORT"
cat "$REPORT"
if [[ -z "$OUT" ]]; then
  mkdir -p "$HERE/results"
  OUT="$HERE/results/scale-$(date -u +%Y-%m-%d).md"
fi
cp "$REPORT" "$OUT"
log "written to $OUT"
