#!/usr/bin/env bash
# Train every member of the grid, each without and with class weights, then combine them.
#
#   ./run_all.sh [--quick] [--data PATH] [--members LIST] [--only LIST] [--jobs N] [--out DIR] [--tensorboard]
#                [--scheduler tcp://HOST:PORT [--fetch-models] [--shared-out]]
#
# The grid is the reference paper's four members (baseline resnet50 senet50 vgg16), each plain
# and class-weighted (8 runs), plus the registered members named in --members (comma-separated).
# --only LIST replaces the grid. Complete runs are skipped and interrupted runs resume: the
# trainer itself does both, so re-running this script after a kill picks up where it stopped.
# Each run logs to OUT/<run>/train.log. Everything (data, members, weights) is checked before
# any training starts. --quick runs the same pipeline at smoke scale (a stratified subset,
# 1 epoch, minimum image sizes, random weights for the transfer members, flip TTA only).
# --tensorboard passes --tensorboard to every training (logs in OUT/<run>/tensorboard; view them with
# tensorboard --logdir OUT). The report is OUT/report/index.html (with --data, the outlier faces too).
# --scheduler runs every training as a task on that Dask cluster (python -m members.grid): results
# come back to OUT (--fetch-models: model.keras too; --shared-out: workers write to OUT directly).
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "run_all.sh: $*" >&2; exit 2; }

PYTHON=${PYTHON:-python3}
QUICK=0 DATA="" EXTRA="" ONLY="" JOBS=1 OUT="artifacts" TENSORBOARD=0 SCHEDULER="" CLUSTER_FLAGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --data) [ $# -ge 2 ] || die "--data needs a path"; DATA=$2; shift ;;
    --members) [ $# -ge 2 ] || die "--members needs a comma-separated list"; EXTRA=$2; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a comma-separated list"; ONLY=$2; shift ;;
    --jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOBS=$2; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT=$2; shift ;;
    --tensorboard) TENSORBOARD=1 ;;
    --scheduler) [ $# -ge 2 ] || die "--scheduler needs an address (tcp://HOST:PORT)"; SCHEDULER=$2; shift ;;
    --fetch-models|--shared-out) CLUSTER_FLAGS+=("$1") ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive integer. Received: --jobs $JOBS"

GRID_ARGS=(--out "$OUT")
[ "$QUICK" = 1 ] && GRID_ARGS+=(--quick)
[ -n "${QUICK_LIMIT:-}" ] && GRID_ARGS+=(--quick-limit "$QUICK_LIMIT")
[ -n "$DATA" ] && GRID_ARGS+=(--data "$DATA")
[ -n "$EXTRA" ] && GRID_ARGS+=(--members "$EXTRA")
[ -n "$ONLY" ] && GRID_ARGS+=(--only "$ONLY")
[ "$TENSORBOARD" = 1 ] && GRID_ARGS+=(--tensorboard)
DATA_ARGS=()
[ -n "$DATA" ] && DATA_ARGS=(--data "$DATA")

# On a Dask cluster: python -m members.grid checks, schedules, fetches and combines.
if [ -n "$SCHEDULER" ]; then
  exec $PYTHON -m members.grid --scheduler "$SCHEDULER" "${GRID_ARGS[@]}" ${CLUSTER_FLAGS[@]+"${CLUSTER_FLAGS[@]}"}
fi
[ "${#CLUSTER_FLAGS[@]}" -eq 0 ] || die "${CLUSTER_FLAGS[0]} needs --scheduler"

# The grid's runs and commands, from the one definition in members/grid/plan.py.
RUNS=()      # run names, in order
CMDS=()      # one command line per run
PLAN=$($PYTHON -m members.grid --plan --python "$PYTHON" "${GRID_ARGS[@]}") || die "cannot plan the grid"
while IFS=$'\t' read -r run cmd; do
  RUNS+=("$run"); CMDS+=("$cmd")
done <<< "$PLAN"
MEMBERS=$(printf '%s\n' "${RUNS[@]}" | sed 's/-cw$//' | awk '!seen[$0]++' | paste -sd, -)

# 1. Check everything before any training starts: members, options, data, weights.
echo "== checking ${#RUNS[@]} runs (members: $MEMBERS) =="
$PYTHON -m members.grid --check "${GRID_ARGS[@]}" || exit 2
mkdir -p "$OUT"

# 2. Train, --jobs at a time; with several GPUs each job gets its own through CUDA_VISIBLE_DEVICES.
NGPU=0
if command -v nvidia-smi >/dev/null 2>&1; then NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
start_run() {  # $1 index, $2 slot
  local i=$1 slot=$2 run=${RUNS[$1]}
  mkdir -p "$OUT/$run"
  local env_prefix=""
  if [ "$NGPU" -gt 1 ]; then env_prefix="CUDA_VISIBLE_DEVICES=$(( slot % NGPU ))"; fi
  echo "[$(date +%H:%M:%S)] start $run${env_prefix:+ ($env_prefix)}: log $OUT/$run/train.log"
  ( eval "$env_prefix ${CMDS[$i]}" >>"$OUT/$run/train.log" 2>&1 ) &
  PIDS[$slot]=$!
  SLOT_RUN[$slot]=$run
}
FAILED=()
declare -a PIDS=() SLOT_RUN=()
next=0
reap() {  # wait for the job in slot $1
  local slot=$1
  if wait "${PIDS[$slot]}"; then
    echo "[$(date +%H:%M:%S)] done  ${SLOT_RUN[$slot]}"
  else
    echo "[$(date +%H:%M:%S)] FAILED ${SLOT_RUN[$slot]} (see $OUT/${SLOT_RUN[$slot]}/train.log):" >&2
    tail -n 5 "$OUT/${SLOT_RUN[$slot]}/train.log" >&2 || true
    FAILED+=("${SLOT_RUN[$slot]}")
  fi
  PIDS[$slot]=""
}
trap 'echo "interrupted: re-run the same command to resume" >&2; kill $(jobs -p) 2>/dev/null; exit 130' INT TERM
while [ "$next" -lt "${#RUNS[@]}" ] || [ -n "${PIDS[*]// /}" ]; do
  for ((s = 0; s < JOBS; s++)); do
    if [ -z "${PIDS[$s]:-}" ] && [ "$next" -lt "${#RUNS[@]}" ]; then
      start_run "$next" "$s"; next=$((next + 1))
    fi
  done
  for ((s = 0; s < JOBS; s++)); do
    if [ -n "${PIDS[$s]:-}" ] && ! kill -0 "${PIDS[$s]}" 2>/dev/null; then reap "$s"; fi
  done
  sleep 1
done
if [ "${#FAILED[@]}" -gt 0 ]; then
  die "${#FAILED[@]} run(s) failed: ${FAILED[*]}; fix and re-run the same command (finished runs are skipped)"
fi

# 3. Combine exactly the runs of this grid.
echo "== combining ${#RUNS[@]} runs =="
$PYTHON -m ensemble.combine "$OUT" --runs "${RUNS[@]}" --out "$OUT/report" ${DATA_ARGS[@]+"${DATA_ARGS[@]}"}
echo "Report: $OUT/report/index.html (open it in a browser; also summary.md, summary.csv, summary.json)"
