#!/usr/bin/env bash
# The GPU results of the course in one command, on a machine with CUDA and its own torch (no
# virtual environment of ours, no network):
#
#     OUT=folder bash benchmarks/gpu_run.sh
#
# runs, each under a time limit,
#     python3 -m bncourse.experiments.bn_bandwidth --size gpu   (batch norm against the memory floor)
#     python3 -m bncourse.experiments.bn_training --size gpu    (Chapter 4's experiments)
# with PYTHONPATH=src, writes bn_bandwidth_gpu.json and bn_training_gpu.json into $OUT with a log of
# each, and prints a summary. Copy the two JSON files into chapters/results/ and commit them.
# Estimated on the CPU (see the two modules' sizes): about 2.5 minutes for bn_bandwidth (most of it
# torch.compile compiling) and at most 4.6 for bn_training on one H100/H200.
#
# Needs python3 with torch, numpy and, for bn_training's data (scikit-learn's digits), scikit-learn;
# without scikit-learn bn_training is skipped with a message. tqdm and Triton are used when present
# (without Triton, the course's kernel is recorded as skipped).
# Without the repository's .git (a copy of the working tree), pass the commit: BNCOURSE_GIT_COMMIT=<sha>.
#
# Variables: OUT (required), SIZE=gpu|cpu|tiny (tiny: the test suite's), PYTHON=python3,
# BANDWIDTH_LIMIT=210 and TRAINING_LIMIT=330 (seconds per command), DEVICE (default: cuda when
# available). Exit status: 0 when both files were written, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for the results}
SIZE=${SIZE:-gpu}
PYTHON=${PYTHON:-python3}
BANDWIDTH_LIMIT=${BANDWIDTH_LIMIT:-210}
TRAINING_LIMIT=${TRAINING_LIMIT:-330}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
DEVICE_ARGS=()
if [ -n "${DEVICE:-}" ]; then DEVICE_ARGS=(--device "$DEVICE"); fi

echo "== preflight"
"$PYTHON" - "$SIZE" <<'EOF' || exit 1
import importlib.util, sys
import torch
size = sys.argv[1]
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}")
for name in ("numpy", "sklearn", "tqdm", "triton"):
    print(f"{name}: {'present' if importlib.util.find_spec(name) else 'MISSING'}")
if size == "gpu" and not torch.cuda.is_available():
    sys.exit("SIZE=gpu needs CUDA, and torch sees no GPU here")
EOF
HAVE_SKLEARN=$("$PYTHON" -c 'import importlib.util; print(int(importlib.util.find_spec("sklearn") is not None))')

failed=0
run() {   # run NAME LIMIT: one experiment under its time limit, its output in $OUT/NAME.log
    local name=$1 limit=$2 started=$SECONDS
    echo "== $name (size $SIZE, limit ${limit} s)"
    timeout -k 10 "$limit" "$PYTHON" -m "bncourse.experiments.$name" --size "$SIZE" --out "$OUT" \
        "${DEVICE_ARGS[@]}" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit status $rc after $((SECONDS - started)) s"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "$name: stopped at its time limit"; fi
    if [ $rc -ne 0 ]; then failed=1; tail -n 20 "$OUT/$name.log"; fi
}

run bn_bandwidth "$BANDWIDTH_LIMIT"
if [ "$HAVE_SKLEARN" = 1 ]; then
    run bn_training "$TRAINING_LIMIT"
else
    echo "== bn_training skipped: scikit-learn is missing, and its digits are the experiments' data"
    failed=1
fi

echo "== summary"
"$PYTHON" - "$OUT" "$SIZE" <<'EOF'
import json, sys
from pathlib import Path
from bncourse.experiments import bn_bandwidth, bn_training
out, size = Path(sys.argv[1]), sys.argv[2]
bandwidth = out / f"bn_bandwidth_{size}.json"
if bandwidth.exists():
    result = json.loads(bandwidth.read_text())
    bn_bandwidth.validate(result)
    print(bn_bandwidth.format_table(result))
    print(f"bn_bandwidth: {result['seconds']:.0f} s, commit {result['environment']['git_commit']}")
else:
    print(f"no {bandwidth.name}")
training = out / f"bn_training_{size}.json"
if training.exists():
    result = json.loads(training.read_text())
    bn_training.validate(result)
    print(f"bn_training on {result['environment']['device']}: "
          + ", ".join(f"{name} {s:.0f} s" for name, s in result["seconds"].items())
          + f"; commit {result['environment']['git_commit']}")
    layer = result["experiments"].get("timing", {}).get("bn_layer_cost", {})
    for name, run in layer.get("variants", {}).items():
        print(f"  {name}: forward {run['forward']['median_ms']:.3f} ms, "
              f"forward + backward {run['forward_backward']['median_ms']:.3f} ms")
else:
    print(f"no {training.name}")
EOF
ls -l "$OUT"
exit $failed
