#!/usr/bin/env bash
# gtaray's Ray path on the lent GPU machine (nvidia-h200: its image's python3 and torch, no Ray,
# no network), in ONE device call. First, here: bash benchmarks/build_gpu_wheels.sh (-> .whl/).
# Then the device tool: run(command="bash benchmarks/gpu_ray.sh $OUT", carry=[".whl"],
# timeout_s=600). On the machine it:
#   0. installs .whl/ into /tmp/site (--no-deps: the image's torch and packages stay) and puts
#      /tmp/site and the repo on PYTHONPATH (Ray's workers inherit it); records env.txt
#   a. train:     gtaray train experiments/smoke.yaml on the GPU (1 worker, nccl); train_check
#                 reads the final checkpoint: reported device cuda:*, backend nccl -> train.json
#   b. sweep:     gtaray sweep experiments/smoke.yaml on the GPU (4 trials), gtaray report on
#                 it; sweep_check reads the Parquet rows -> sweep.json
#   c. equality:  benchmarks/ddp_equality.py --device cuda: 2 workers x batch 1 on one GPU
#                 (gloo, 0.5 GPU each) against 1 worker x batch 2 -> equality.json
#   d. bench:     gtaray bench --only trainer at 1024x512, width 1.0 -> trainer.json
# Every stage runs under its own timeout, and all of them within GPU_RAY_BUDGET seconds (480)
# of the start: a stage that fails or times out is logged and the next one runs. What comes
# back (at most 8 files, flat): summary.txt ("stage: exit N, seconds S"), env.txt, log.txt
# (every stage's output, then Ray's error logs if a stage failed) and the JSON files above.
#
#   GPU_RAY_DRY=1 bash benchmarks/gpu_ray.sh /tmp/out    # here, on CPU: tiny, no install
#   GPU_RAY_STAGES="train sweep" ...                      # only these stages (default: all)
#   PYTHON=.venv/bin/python GPU_RAY_INSTALL=1 ...         # with DRY: install .whl/ anyway
set -u
out=${1:?usage: bash benchmarks/gpu_ray.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$out" && out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
dry=${GPU_RAY_DRY:-}
budget=${GPU_RAY_BUDGET:-480}  # typical total on the H200: about 5 minutes
stages=" ${GPU_RAY_STAGES:-train sweep equality bench} "
res=${GPU_RAY_RESULTS:-/tmp/gtaray-gpu${dry:+-dry}}  # results.dir of every stage
summary=$out/summary.txt log=$out/log.txt envfile=$out/env.txt
gpus_file=${TMPDIR:-/tmp}/gtaray-gpus.$$  # what Ray and torch count, read below
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0  # no network there: no usage report
unset RAY_ADDRESS  # every stage starts its own local Ray
: > "$summary"
: > "$log"
rm -rf "$res"  # a rerun on a warm machine starts afresh
start=$(date +%s.%N)
failed=0

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# stage NAME LIMIT CMD...: CMD under `timeout` (its whole process group: Ray's processes too),
# capped by what is left of the budget; its output into log.txt, one line into summary.txt.
stage() {
    local name=$1 limit=$2 t0 rc left
    shift 2
    left=$(awk -v s="$start" -v n="$(date +%s.%N)" -v b="$budget" 'BEGIN { printf "%d", b - (n - s) }')
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 15 ]; then
        echo "$name: skipped, budget of ${budget} s spent" >> "$summary"
        failed=1
        return 1
    fi
    echo "===== $name ($(date +%T), limit ${limit} s): $*" >> "$log"
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" >> "$log" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] && echo "($name: timed out after $limit s)" >> "$log"
    echo "$name: exit $rc, seconds $(elapsed "$t0")" >> "$summary"
    [ "$rc" -eq 0 ] || failed=1
    return "$rc"
}
wants() { [[ $stages == *" $1 "* ]]; }

# 0. Install the wheels: --no-deps, so pip touches nothing of the image (its torch above all).
if [ -z "$dry" ] || [ -n "${GPU_RAY_INSTALL:-}" ]; then
    site=${GPU_RAY_SITE:-/tmp/site}
    stage install 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$site" .whl/*.whl || { cat "$summary"; tail -40 "$log"; exit 1; }
    export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

# The environment: GPU, versions, what Ray imports in, and whether a local Ray sees the GPU.
{
    echo "date $(date -u +%FT%TZ) | $(uname -srm) | cpus $(nproc)"
    free -g | head -2
    df -h /tmp /dev/shm 2>&1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    ls /dev/nvidia* 2>&1 | tr '\n' ' '
    echo
    echo "PYTHONPATH=$PYTHONPATH"
    timeout 60 "$py" - <<'EOF' 2>&1
import sys, time
import torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "| cuda", torch.version.cuda, "| cudnn",
      torch.backends.cudnn.version(), "| available", torch.cuda.is_available(),
      "| nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "| count", torch.cuda.device_count())
t0 = time.perf_counter()
import ray, ray.train, ray.train.torch, ray.tune  # noqa: E401
print(f"ray {ray.__version__} at {ray.__file__}: import {time.perf_counter() - t0:.2f} s")
from importlib.metadata import version
names = ("numpy pandas pyarrow protobuf grpcio aiohttp requests packaging pydantic typer rich "
         "click msgpack pyyaml filelock fsspec optuna typing-extensions torchvision").split()
found = []
for name in names:
    try:
        found.append(f"{name} {version(name)}")
    except Exception:
        found.append(f"{name} MISSING")
print("versions:", ", ".join(found))
EOF
    echo "--- pip check (the image's own conflicts show here too)"
    timeout 60 "$py" -m pip check 2>&1 | head -40
    echo "--- a local Ray, as gtaray starts it"
    timeout 90 "$py" - <<'EOF' 2>&1 | tee "$gpus_file"
import time
t0 = time.perf_counter()
import ray
import torch
from gtaray.cluster import init_ray
init_ray()
resources = ray.cluster_resources()
print(f"ray.init {time.perf_counter() - t0:.1f} s; resources {resources}")
print(f"gpus: ray {resources.get('GPU', 0):g} torch {torch.cuda.device_count()}")
ray.shutdown()
EOF
} > "$envfile" 2>&1
# Ray counts GPUs through NVML; should it see none where torch sees some, tell it (this
# variable overrides a local Ray's resources).
read -r ray_gpus torch_gpus < <(sed -n 's/^gpus: ray \([0-9.]*\) torch \([0-9]*\)$/\1 \2/p' "$gpus_file")
rm -f "$gpus_file"
if [ -z "$dry" ] && [ "${ray_gpus:-0}" = 0 ] && [ "${torch_gpus:-0}" != 0 ]; then
    export RAY_OVERRIDE_RESOURCES="{\"GPU\": $torch_gpus}"
    echo "Ray saw no GPU, torch $torch_gpus: RAY_OVERRIDE_RESOURCES=$RAY_OVERRIDE_RESOURCES" >> "$envfile"
fi

gpu=(-o scaling.use_gpu=true)
[ -n "$dry" ] && gpu=()

# a. One trial on the GPU through `gtaray train` (1 worker, nccl), then its checkpoint: rank 0
# reports `device` and `backend`; the saved tensors must also load back onto the GPU.
if wants train; then
    if [ -n "$dry" ]; then
        stage train 180 "$py" -m gtaray train experiments/smoke.yaml -o "results.dir=$res/train"
    else
        stage train 120 "$py" -m gtaray train experiments/smoke.yaml -o "results.dir=$res/train" \
            "${gpu[@]}" -o scaling.backend=nccl
    fi
    stage train_check 40 "$py" - "$res/train" "$out/train.json" "${dry:-gpu}" <<'EOF'
import json, sys
from pathlib import Path
import torch
from gtaray.checkpoint import load_file
root, out, gpu = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "gpu"
states = [(load_file(p), p) for p in root.glob("*/train/*/checkpoint_*/state.pt")]
if not states:
    out.write_text(json.dumps({"pass": False, "error": f"no checkpoint under {root}"}))
    sys.exit(f"no checkpoint under {root}")
state, path = max(states, key=lambda s: (s[0]["iteration"], s[1].stat().st_mtime))
metrics = state["metrics"]
# Where the weights lived: loaded without map_location, tensors return to their device.
raw = torch.load(path, weights_only=True, map_location=None if torch.cuda.is_available() else "cpu")
saved_on = sorted({t.device.type for net in raw["nets"].values() for t in net.values()})
want_device, want_backend = ("cuda", "nccl") if gpu else ("cpu", "gloo")
checks = {
    "device": str(metrics.get("device", "")).startswith(want_device),
    "backend": metrics.get("backend") == want_backend,
    "saved_tensors_on": saved_on == [want_device] if gpu else True,
    "finished": state["iteration"] == state["experiment"]["train"]["iterations"],
    "not_diverged": not metrics.get("diverged"),
}
keep = ("device", "backend", "workers", "iteration", "iters_per_second", "target_miou",
        "eval_seconds", "checkpoint_seconds", "diverged")
report = {"checkpoint": str(path), "metrics": {k: metrics.get(k) for k in keep},
          "saved_tensors_on": saved_on, "checks": checks, "pass": all(checks.values())}
out.write_text(json.dumps(report, indent=2, default=str))
print(json.dumps(report, indent=2, default=str))
sys.exit(0 if report["pass"] else 1)
EOF
fi

# b. The smoke sweep (2 variants x 2 seeds) on the GPU, its report, and its rows.
if wants sweep; then
    if [ -n "$dry" ]; then  # 2 trials
        stage sweep 180 "$py" -m gtaray sweep experiments/smoke.yaml --out "$res/sweep" \
            -o "sweep.seeds=[0]"
    else
        stage sweep 150 "$py" -m gtaray sweep experiments/smoke.yaml --out "$res/sweep" \
            "${gpu[@]}"
    fi
    stage report 40 "$py" -m gtaray report "$res/sweep"
    stage sweep_check 30 "$py" - "$res/sweep" "$out/sweep.json" "${dry:-gpu}" <<'EOF'
import json, sys
from gtaray.results import load_trials
folder, out, gpu = sys.argv[1], sys.argv[2], sys.argv[3] == "gpu"
rows = load_trials(folder, "smoke")
cols = ["trial_id", "variant", "seed", "status", "device", "workers", "iterations_done",
        "target_miou", "wall_seconds", "iters_per_second", "error"]
picked = rows[[c for c in cols if c in rows.columns]].astype(object)
table = picked.where(picked.notna(), None).to_dict("records")  # NaN -> null
checks = {
    "rows": len(rows) == (4 if gpu else 2),
    "completed": bool(len(rows)) and bool((rows["status"] == "completed").all()),
    # What each trial's worker trained on: "cuda:0" (or "cpu" in the dry run).
    "device": bool(len(rows))
    and bool(rows["device"].astype(str).str.startswith("cuda" if gpu else "cpu").all()),
}
report = {"rows": table, "checks": checks, "pass": all(checks.values())}
out_text = json.dumps(report, indent=2, default=str)
open(out, "w").write(out_text)
print(out_text)
sys.exit(0 if report["pass"] else 1)
EOF
fi

# c. DDP equality: 2 workers x batch 1 sharing the GPU (gloo) against 1 worker x batch 2.
if wants equality; then
    if [ -n "$dry" ]; then
        stage equality 180 "$py" benchmarks/ddp_equality.py --device cpu --arch compact \
            --json "$out/equality.json"
    else
        stage equality 150 "$py" benchmarks/ddp_equality.py --device cuda \
            --json "$out/equality.json"
    fi
fi

# d. The TorchTrainer against the bare loop at the paper's size (1 and 2 workers): both
# workers on the one GPU, half of it and half the CPUs each, gloo between them. Windows of
# 5 steps, 2 timed ones per fit: each window ends in a paper-size checkpoint (GBs to disk).
if wants bench; then
    repeats=()  # --repeats is newer than the rest of `gtaray bench`
    "$py" -m gtaray bench --help 2>/dev/null | grep -q -- --repeats && repeats=(--repeats 2)
    if [ -n "$dry" ]; then
        stage bench 180 "$py" -m gtaray bench --quick --only trainer "${repeats[@]}" \
            --json "$out/trainer.json" -o "results.dir=$res/bench"
    else
        half=$(($(nproc) / 2))
        stage bench 200 "$py" -m gtaray bench --device cuda --size 1024x512 --width 1.0 \
            --only trainer --steps 5 "${repeats[@]}" --json "$out/trainer.json" \
            -o train.batch_size=1 -o "scaling.cpus_per_worker=$half" \
            -o scaling.gpus_per_worker=0.5 -o scaling.backend=gloo -o "results.dir=$res/bench"
    fi
fi

# On a failure, the ends of Ray's own logs (the driver's output is in log.txt already).
if [ "$failed" -ne 0 ]; then
    echo "===== Ray's logs (a stage failed)" >> "$log"
    for f in $(ls -d /tmp/ray/session_2* 2>/dev/null | tail -4); do
        for g in gcs_server.err raylet.err dashboard.err dashboard_agent.log runtime_env_agent.err \
                 $(cd "$f/logs" 2>/dev/null && grep -l -E "Traceback|Error" worker-*.err 2>/dev/null | head -3); do
            [ -s "$f/logs/$g" ] || continue
            echo "--- $f/logs/$g" >> "$log"
            tail -n 25 "$f/logs/$g" | cut -c1-400 >> "$log"
        done
    done
fi
echo "total: seconds $(elapsed "$start")" >> "$summary"
cat "$summary"
