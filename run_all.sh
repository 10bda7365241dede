#!/usr/bin/env bash
# Rebuild every figure and table of the paper: set up the environment, then run notebooks/01-06 in order.
#
#   ./run_all.sh                          default profile on the embedded dataset (2 CPU cores: 82 min from scratch)
#   ./run_all.sh --profile smoke          the same program with tiny numbers (tests, CI)
#   ./run_all.sh --profile paper --dataset crema-d --data-root PATH --device cuda
#   ./run_all.sh --only 01,03             some notebooks only (each reuses what the others saved)
#   ./run_all.sh --peer-seeds none        Table 1 without the peer methods (default: the same seeds as the rest)
#   ./run_all.sh --setup-only             create .venv from requirements.lock, register the Jupyter kernel, nothing else
#   ./run_all.sh --python PATH            use an existing Python (a conda env, a GPU machine's image): nothing is
#                                         installed into it unless --install is given; GAPKIT_PYTHON does the same
#
# Executed notebooks go to executed/<profile>/ (git-ignored); figures to figures/<profile>/, tables to
# tables/<profile>/, run folders and scalar results to results/<profile>/ (a corpus other than the
# embedded one gets a <dataset>/ subfolder). Finished training runs are reused, never retrained.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

PROFILE=""  # "": gapkit's defaults (python -m gapkit paths --help)
DATASET=""
DATA_ROOT=""
DEVICE=auto
ONLY=""
PEER_SEEDS=""
SETUP_ONLY=0
INSTALL=0
PYTHON="${GAPKIT_PYTHON:-}"
KERNEL=gapkit
NOTEBOOKS=(01_data_prep 02_warmup 03_gmm_analysis 04_adaptive_training 05_ablations 06_optimizer_study)

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    echo "options: --profile NAME  --dataset NAME  --data-root PATH   (names: python -m gapkit paths --help)"
    echo "         --device auto|cpu|cuda  --only 01,03  --peer-seeds none|0,1,2  --setup-only"
    echo "         --python PATH  --install  -h|--help"
}

die() { echo "run_all.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) [[ $# -ge 2 ]] || die "--profile needs a value"; PROFILE="$2"; shift 2 ;;
        --dataset) [[ $# -ge 2 ]] || die "--dataset needs a value"; DATASET="$2"; shift 2 ;;
        --data-root) [[ $# -ge 2 ]] || die "--data-root needs a value"; DATA_ROOT="$2"; shift 2 ;;
        --device) [[ $# -ge 2 ]] || die "--device needs a value"; DEVICE="$2"; shift 2 ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a value"; ONLY="$2"; shift 2 ;;
        --peer-seeds) [[ $# -ge 2 ]] || die "--peer-seeds needs a value"; PEER_SEEDS="$2"; shift 2 ;;
        --setup-only) SETUP_ONLY=1; shift ;;
        --python) [[ $# -ge 2 ]] || die "--python needs a value"; PYTHON="$2"; shift 2 ;;
        --install) INSTALL=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

case "$DEVICE" in auto|cpu|cuda) ;; *) die "unknown device '$DEVICE' (auto, cpu or cuda)" ;; esac
[[ "$DATASET" != manifest || -n "$DATA_ROOT" ]] || die "--dataset manifest needs --data-root (the manifest CSV)"
[[ -z "$DATA_ROOT" || -e "$DATA_ROOT" ]] || die "--data-root $DATA_ROOT does not exist"
[[ -z "$PEER_SEEDS" || "$PEER_SEEDS" == none || "$PEER_SEEDS" =~ ^[0-9]+(,[0-9]+)*$ ]] \
    || die "--peer-seeds takes 'none' or seeds such as 0 or 0,1,2"

# ---------------------------------------------------------------------------------------------- set-up
# Everything is installed from requirements.lock (exact versions with hashes), then gapkit itself (editable,
# no dependencies). tools/check_env.py compares the environment with the lock and imports the stack.
install_lock() {  # $1: python
    "$1" -m pip install --upgrade pip >/dev/null
    "$1" -m pip install --require-hashes -r requirements.lock
    "$1" -m pip install --no-deps -e .
}
if [[ -n "$PYTHON" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "--python $PYTHON: no such executable"
    PY="$(command -v "$PYTHON")"
    if [[ "$INSTALL" == 1 ]]; then
        echo "== set-up: installing requirements.lock into $PY"
        install_lock "$PY"
    fi
    "$PY" tools/check_env.py --loose --quiet \
        || die "$PY lacks what gapkit needs (listed above); add --install to install requirements.lock into it"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # gapkit from this checkout, installed or not
    KERNEL=python3  # that Python's own kernel: nothing registered in it
else
    PY=.venv/bin/python
    if [[ ! -x "$PY" ]] || ! "$PY" tools/check_env.py --quiet; then
        echo "== set-up: installing requirements.lock into .venv"
        [[ -x "$PY" ]] || python3 -m venv .venv
        install_lock "$PY"
        "$PY" tools/check_env.py || die "the environment still does not match requirements.lock (see above)"
    fi
fi
KERNELS="$("$PY" -m jupyter kernelspec list 2>/dev/null || true)"
if [[ -z "$PYTHON" ]] && ! grep -q "^ *$KERNEL " <<< "$KERNELS"; then
    echo "== set-up: registering the Jupyter kernel '$KERNEL' for $PY"
    "$PY" -m ipykernel install --sys-prefix --name "$KERNEL" --display-name "Python (gapkit)" >/dev/null
fi
if [[ "$SETUP_ONLY" == 1 ]]; then
    echo "set-up done: $PY with gapkit, kernel '$KERNEL'"
    exit 0
fi

# ---------------------------------------------------------------------------------------------- layout
# gapkit checks the profile and dataset names and says where their outputs go (gapkit/paths.py: the one definition)
NAMES=()
[[ -z "$PROFILE" ]] || NAMES+=(--profile "$PROFILE")
[[ -z "$DATASET" ]] || NAMES+=(--dataset "$DATASET")
LAYOUT="$("$PY" -m gapkit paths ${NAMES[@]+"${NAMES[@]}"} 2>&1)" || die "${LAYOUT##*error: }"
while IFS='=' read -r key value; do
    case "$key" in
        profile) PROFILE="$value" ;; dataset) DATASET="$value" ;;
        results) RESULTS_DIR="$value" ;; figures) FIGURES_DIR="$value" ;; tables) TABLES_DIR="$value" ;;
        executed) OUT="$value" ;; runs) RUNS_DIR="$value" ;;
    esac
done <<< "$LAYOUT"

# ---------------------------------------------------------------------------------------------- notebooks
SELECTED=()
for nb in "${NOTEBOOKS[@]}"; do
    if [[ -z "$ONLY" ]] || [[ ",$ONLY," == *",${nb:0:2},"* ]]; then SELECTED+=("$nb"); fi
done
[[ ${#SELECTED[@]} -gt 0 ]] || die "--only $ONLY selects no notebook (use two-digit numbers: 01,02,...,06)"

mkdir -p "$OUT"
PARAMS=(-p profile "$PROFILE" -p dataset "$DATASET" -p device "$DEVICE")
[[ -z "$DATA_ROOT" ]] || PARAMS+=(-p data_root "$(cd "$(dirname "$DATA_ROOT")" && pwd)/$(basename "$DATA_ROOT")")

echo "== running ${#SELECTED[@]} notebook(s): profile $PROFILE, dataset $DATASET, device $DEVICE"
START=$SECONDS
for nb in "${SELECTED[@]}"; do
    t0=$SECONDS
    EXTRA=()
    if [[ "$nb" == 04_* && -n "$PEER_SEEDS" ]]; then  # only notebook 04 has this parameter
        if [[ "$PEER_SEEDS" == none ]]; then EXTRA=(-y "peer_seeds: []"); else EXTRA=(-y "peer_seeds: [$PEER_SEEDS]"); fi
    fi
    echo "-- $nb (log: $OUT/$nb.log)"
    if ! "$PY" -m papermill "notebooks/$nb.ipynb" "$OUT/$nb.ipynb" -k "$KERNEL" --cwd notebooks \
            --no-progress-bar --log-output "${PARAMS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/$nb.log" 2>&1; then
        tail -n 40 "$OUT/$nb.log" >&2
        echo "run_all.sh: notebook $nb FAILED after $((SECONDS - t0)) s; executed copy: $OUT/$nb.ipynb, log: $OUT/$nb.log" >&2
        exit 1
    fi
    echo "   $nb done in $((SECONDS - t0)) s"
done

echo "== all done in $((SECONDS - START)) s"
echo "   figures:   $FIGURES_DIR/"
echo "   tables:    $TABLES_DIR/"
echo "   results:   $RESULTS_DIR/ (run folders: $RUNS_DIR/)"
echo "   notebooks: $OUT/"
