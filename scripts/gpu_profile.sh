#!/usr/bin/env bash
# Measure this machine's GPU (or CPU) and fit its cost-model profile, in one command.
#
#   scripts/gpu_profile.sh OUT_DIR [--device cuda:0|cpu] [--dtype bf16] [--budget-seconds 330]
#                                  [--gpu NAME] [--quick | --full]
#
# About 8 minutes on one H100 or H200: the full bench sweep stopped by its budget (330 s by
# default, highest-priority kernels first), then `shapewise fit`, then
# scripts/validate_measured.py when it exists. Everything lands in OUT_DIR:
#
#   bench.json     the measurements, with provenance   (shapewise bench --resume --out ...);
#                  on a GPU without --dtype: bench-bf16.json and bench-tf32.json
#   bench.log      the bench's progress, one line per kernel
#   profile.json   the fitted profile                   (shapewise fit bench.json --gpu ...)
#   fit.txt        what fit printed
#   validate.txt   what scripts/validate_measured.py printed (when present)
#   smi.txt        nvidia-smi / rocm-smi as found (read-only: no setting is ever changed)
#
# Running it again on the same OUT_DIR continues the bench where it stopped (--resume), so
# a second call with a budget finishes a sweep the first one could not.
#
# --gpu NAME is the catalog name given to `shapewise fit` (default: none, and fit takes the
# device name the bench recorded, e.g. "NVIDIA H100 80GB HBM3", which the catalog's aliases
# resolve; on the CPU it builds a profile from the measurements). $PYTHON picks the
# interpreter (default: python). The CPU path runs the same
# steps (--device cpu), which is how the tests exercise this script.
set -euo pipefail

usage() {
    sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

[[ $# -ge 1 && $1 != -* ]] || usage
out_dir=$1
shift
device=""
dtype=""
budget=330
gpu=""
mode=(--full)
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --dtype) dtype=$2; shift 2 ;;
        --budget-seconds) budget=$2; shift 2 ;;
        --gpu) gpu=$2; shift 2 ;;
        --quick | --full) mode=("$1"); shift ;;
        --plan) mode=(--plan "$2"); shift 2 ;;  # hidden: --plan tiny, for tests
        -h | --help) usage 0 ;;
        *) echo "gpu_profile.sh: unknown option $1" >&2; usage ;;
    esac
done

py=${PYTHON:-python}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out_dir"
bench=$out_dir/bench.json
profile=$out_dir/profile.json
t_start=$SECONDS

step() { printf '\n== %s (%ds)\n' "$1" "$((SECONDS - t_start))"; }

# 0. shapewise importable, kernels included (kernels/ is installed as shapewise.kernels);
# on a fresh machine install this checkout in place, offline
if ! "$py" -c "import shapewise.kernels" 2>/dev/null; then
    step "pip install -e $repo"
    "$py" -m pip install --quiet --no-deps --no-build-isolation -e "$repo"
fi

# 1. the device as found (read-only queries; clocks and settings are left alone)
if [[ $device != cpu ]]; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi >"$out_dir/smi.txt" 2>&1 || true
    elif command -v rocm-smi >/dev/null 2>&1; then
        rocm-smi >"$out_dir/smi.txt" 2>&1 || true
    fi
fi

# 2. bench: resumable, budgeted, progress to the log. On a GPU without --dtype, two sweeps:
# bf16 (GEMMs, attention, memory-bound ops; 70% of the budget) and tf32 (GEMMs; 30%), so
# the fit calibrates both tensor-core paths the validation table checks.
if [[ -n $dtype ]]; then
    sweeps=("$dtype:$budget")
elif [[ $device == cpu ]]; then
    sweeps=("fp32:$budget")
else
    sweeps=("bf16:$((budget * 7 / 10))" "tf32:$((budget * 3 / 10))")
fi
benches=()
for sweep in "${sweeps[@]}"; do
    dt=${sweep%%:*}
    b=${sweep##*:}
    file=$bench
    [[ ${#sweeps[@]} -gt 1 ]] && file=$out_dir/bench-$dt.json
    benches+=("$file")
    step "bench $dt (budget ${b}s)"
    args=(bench --resume --out "$file" --budget-seconds "$b" "${mode[@]}" --progress --dtype "$dt")
    [[ -n $device ]] && args+=(--device "$device")
    if ! "$py" -m shapewise "${args[@]}" 2>>"$out_dir/bench.log"; then
        tail -n 20 "$out_dir/bench.log" >&2
        echo "gpu_profile.sh: bench failed (log: $out_dir/bench.log)" >&2
        exit 1
    fi
done
grep -E "^shapewise bench: (stopped|resuming)|warning" "$out_dir/bench.log" || true

# 3. fit (without --gpu, fit reads the device from the bench file's provenance)
step "fit${gpu:+ --gpu '$gpu'}"
fit_args=(fit "${benches[@]}" --out "$profile")
[[ -n $gpu ]] && fit_args+=(--gpu "$gpu")
if "$py" -m shapewise fit --help >/dev/null 2>&1; then
    "$py" -m shapewise "${fit_args[@]}" 2>&1 | tee "$out_dir/fit.txt"
else
    echo "gpu_profile.sh: this shapewise has no 'fit' subcommand; skipped" | tee "$out_dir/fit.txt"
fi

# 4. validation against the measurements, when the project has the script
if [[ -f $repo/scripts/validate_measured.py && -f $profile ]]; then
    step "validate"
    "$py" "$repo/scripts/validate_measured.py" --profile "$profile" --bench "${benches[@]}" 2>&1 \
        | tee "$out_dir/validate.txt"
fi

step "done"
ls -l "$out_dir"
