#!/usr/bin/env bash
# The GPU figures in docs/benchmarks.md: the paper-size step (1024x512, width 1.0, batch 1) per
# variant, then the `full` step under each fast-path switch, on one GPU.
#   bash benchmarks/gpu.sh OUT_DIR        # writes gpu.txt, step.json/.log, switches.json/.log
set -u
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$py" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version())"
    echo "cpus $(nproc)"
} > "$out/gpu.txt" 2>&1
# Every CPU but one decodes data (train.loader_workers defaults to cpus_per_worker - 1).
common=(--device cuda --size 1024x512 --width 1.0 -o train.batch_size=1
        -o "scaling.cpus_per_worker=$(nproc)" -o "results.dir=${TMPDIR:-/tmp}/gtaray-bench")
timeout "${STEP_TIMEOUT:-100}" "$py" -m gtaray bench --only step --steps 20 \
    --json "$out/step.json" "${common[@]}" > "$out/step.log" 2>&1
echo "step: exit $?" >> "$out/gpu.txt"
timeout "${SWITCHES_TIMEOUT:-240}" "$py" -m gtaray bench --only switches --steps 20 --repeats 2 \
    --json "$out/switches.json" "${common[@]}" > "$out/switches.log" 2>&1
echo "switches: exit $?" >> "$out/gpu.txt"
cat "$out/gpu.txt"
