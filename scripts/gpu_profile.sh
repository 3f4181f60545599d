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
#   selfcheck.txt  every swept kernel against float64 first (python -m shapewise.kernels.selfcheck);
#                  a wrong result stops the script before anything is timed
#   smi.txt        nvidia-smi / rocm-smi as found, and smi-after.txt after the sweeps
#                  (read-only queries: no setting is ever changed)
#
# Running it again on the same OUT_DIR continues the bench where it stopped (--resume), so
# a second call with a budget finishes a sweep the first one could not.
#
# --gpu NAME is the catalog name given to `shapewise fit` (default: none, and fit takes the
# device name the bench recorded, e.g. "NVIDIA H100 80GB HBM3", which the catalog's aliases
# resolve; on the CPU it builds a profile from the measurements). $PYTHON picks the
# interpreter (default: python3, else python). The CPU path runs the same
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

py=${PYTHON:-$(command -v python3 || command -v python || echo python)}
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
smi() {  # smi FILE: what the driver reports now, appended
    if [[ $device == cpu ]]; then return 0; fi
    if command -v nvidia-smi >/dev/null 2>&1; then
        { nvidia-smi; nvidia-smi -q -d CLOCK,PERFORMANCE,TEMPERATURE,POWER; } >>"$1" 2>&1 || true
    elif command -v rocm-smi >/dev/null 2>&1; then
        rocm-smi >>"$1" 2>&1 || true
    fi
}
smi "$out_dir/smi.txt"

# 1b. correct first: every kernel the sweeps time, against float64, before any timing
# (on a GPU this also proves the tf32 sweep runs on TF32 tensor cores)
step "selfcheck"
if ! "$py" -m shapewise.kernels.selfcheck ${device:+--device "$device"} \
        | tee "$out_dir/selfcheck.txt"; then
    echo "gpu_profile.sh: a kernel computes wrong results here; nothing was timed" \
         "(see $out_dir/selfcheck.txt)" >&2
    exit 1
fi

# 2. bench: resumable, budgeted, progress to the log. On a GPU without --dtype, two sweeps:
# bf16 (GEMMs, attention, memory-bound ops; 70% of the budget) and tf32 (GEMMs; 30%), so
# the fit calibrates both tensor-core paths the validation table checks.
if [[ -n $dtype ]]; then
    sweeps=("$dtype:$budget")
elif [[ $device == cpu ]]; then
    sweeps=("fp32:$budget")
elif "$py" -c "from shapewise.kernels.selfcheck import has_tf32; import sys
sys.exit(0 if has_tf32('${device:-cuda:0}') else 1)" 2>/dev/null; then
    sweeps=("bf16:$((budget * 7 / 10))" "tf32:$((budget * 3 / 10))")
else  # no TF32 tensor cores (pre-Ampere, or ROCm's torch): bf16 gets the whole budget
    sweeps=("bf16:$budget")
fi
touch "$out_dir/bench.log"
log_start=$(( $(wc -c <"$out_dir/bench.log") + 1 ))  # this run's part of the log
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
    # a wall-clock guard over the budget (checked only between measurements): a hung
    # kernel gets SIGTERM, which the bench records as an interruption and saves
    # (--foreground keeps the bench in the terminal's process group: Ctrl-C still reaches it)
    guard=()
    command -v timeout >/dev/null 2>&1 \
        && guard=(timeout --foreground -s TERM -k 30 "$((b + 120))")
    rc=0
    "${guard[@]}" "$py" -m shapewise "${args[@]}" 2>>"$out_dir/bench.log" \
        | tee -a "$out_dir/bench.log" || rc=$?
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "gpu_profile.sh: bench $dt passed its wall-clock guard and was stopped;" \
             "what it measured is saved and is fitted (run again to resume)" >&2
    elif [[ $rc -eq 3 ]]; then
        echo "gpu_profile.sh: bench $dt stopped on a device failure (bench.log); the kernel" \
             "that failed is recorded as skipped, the rest is fitted (run again to resume)" >&2
    elif [[ $rc -ne 0 ]]; then
        tail -n 20 "$out_dir/bench.log" >&2
        echo "gpu_profile.sh: bench failed with exit $rc (log: $out_dir/bench.log)" >&2
        exit 1
    fi
done
smi "$out_dir/smi-after.txt"
tail -c "+$log_start" "$out_dir/bench.log" \
    | grep -iE "^shapewise bench: (stopped|resuming|device failure)|warning" || true
# measurements that failed with an error (recorded so the sweep could go on) are said
# loudly: a resume measures them again
"$py" - "${benches[@]}" <<'PY' >&2 || true
import json, sys
for path in sys.argv[1:]:
    recs = json.load(open(path))["measurements"]
    bad = [r for r in recs if str(r.get("reason", "")).startswith("error:")]
    if bad:
        print(f"gpu_profile.sh: WARNING: {len(bad)} of {len(recs)} measurements in {path} "
              f"failed with an error, e.g. {bad[0]['key']}: {bad[0]['reason']}")
PY

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
