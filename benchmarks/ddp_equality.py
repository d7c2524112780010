"""Two DDP workers with batch 1 against one worker with batch 2: the same final weights.

    python benchmarks/ddp_equality.py --device cpu --json /tmp/eq.json     # here: gloo, CPU
    python benchmarks/ddp_equality.py --device cuda --json OUT/equality.json
    python benchmarks/ddp_equality.py --device cuda --arch compact         # one architecture

The check of tests/test_train.py::test_full_two_workers_batch_1_equal_one_worker_batch_2 as
a script, for a GPU machine (benchmarks/gpu_ray.sh runs it there): the `full` variant, dropout
off, 3 iterations at lr 1e-5, on experiments/smoke.yaml's tiny scenes, once per architecture.
On cuda both of the two workers share the one GPU (scaling.gpus_per_worker 0.5), so they talk
over gloo (NCCL refuses two ranks on one device); the one worker keeps the default backend.

Prints and writes (--json) per net the largest absolute and relative difference, and whether
every tensor is within the test's tolerances: atol 1e-5 + rtol 1e-4 (torch.testing's rule),
except the authors' D conv biases before instance norm (zero gradient, so Adam moves them by
rounding noise): their bound is 2 x iterations x lr. Exit status 0 when every net passes.
Starts its own local Ray (gtaray.cluster.init_ray), or joins RAY_ADDRESS when that is set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable as a script from any folder, gtaray uninstalled

ATOL, RTOL = 1e-5, 1e-4
ITERATIONS, LR = 3, 1e-5
D_BIAS_BOUND = 2 * ITERATIONS * LR  # the test's bound for the authors' D conv biases


def experiment(results: Path, device: str, arch: str, workers: int):
    from gtaray.config import load_experiment

    overrides = [
        f"results.dir={results}",
        "train.num_to_keep=10",
        "method.variant=full",
        "model.dropout=0.0",
        f"model.arch={arch}",
        f"train.iterations={ITERATIONS}",
        f"train.eval_every={ITERATIONS}",
        f"optim.lr_f={LR}",
        f"optim.lr_gd={LR}",
        f"train.batch_size={2 // workers}",
        f"scaling.num_workers={workers}",
    ]
    if device == "cuda":
        overrides.append("scaling.use_gpu=true")
        if workers == 2:  # both on the one GPU: half of it each, gloo between them
            overrides += ["scaling.gpus_per_worker=0.5", "scaling.backend=gloo"]
    return load_experiment(ROOT / "experiments" / "smoke.yaml", overrides)


def fit(exp, name: str, storage: Path) -> tuple[dict, dict]:
    """One TorchTrainer run; (its last metrics, the nets' final state dicts)."""
    from gtaray.checkpoint import load_file
    from gtaray.trainer import fit_trial

    result = fit_trial(exp, name, storage)
    with result.checkpoint.as_directory() as folder:
        state = load_file(Path(folder) / "state.pt")
    return dict(result.metrics), state["nets"]


def compare(one: dict, two: dict) -> dict:
    """Per net: the largest differences and whether every tensor is within tolerance."""
    import torch

    out = {}
    for name in sorted(one):
        net = {"max_abs": 0.0, "max_rel": 0.0, "worst_over_tolerance": 0.0, "tensors": 0}
        failures, biases = [], {}
        for key, a in one[name].items():
            b = two[name].get(key)
            if b is None or b.shape != a.shape or b.dtype != a.dtype:
                failures.append(f"{key}: missing or other shape/dtype in the 2-worker run")
                continue
            if not a.is_floating_point():  # e.g. a norm's num_batches_tracked
                if not torch.equal(a, b):
                    failures.append(f"{key}: differs")
                continue
            a, b = a.double(), b.double()
            diff = (a - b).abs()
            max_abs = float(diff.max()) if diff.numel() else 0.0
            nonzero = b != 0
            max_rel = float((diff[nonzero] / b[nonzero].abs()).max()) if nonzero.any() else 0.0
            if name == "D" and key.startswith("feature.") and key.endswith(".bias"):
                biases[key] = max_abs  # the authors' D: the test's own bound, not atol/rtol
                if not max_abs <= D_BIAS_BOUND:
                    failures.append(f"{key}: {max_abs:.3g} > {D_BIAS_BOUND:g}")
                continue
            # torch.testing.assert_close's rule: |a - b| <= atol + rtol * |b|.
            ratio = float((diff / (ATOL + RTOL * b.abs())).max()) if diff.numel() else 0.0
            net["max_abs"] = max(net["max_abs"], max_abs)
            net["max_rel"] = max(net["max_rel"], max_rel)
            net["worst_over_tolerance"] = max(net["worst_over_tolerance"], ratio)
            net["tensors"] += 1
            if not ratio <= 1.0:  # NaN fails too
                failures.append(f"{key}: max abs {max_abs:.3g}, {ratio:.3g}x the tolerance")
        if biases:
            net["d_feature_bias_max_abs"] = max(biases.values())
            net["d_feature_bias_bound"] = D_BIAS_BOUND
        net["failures"] = failures[:10]
        net["pass"] = not failures
        out[name] = net
    for name in sorted(set(two) - set(one)):
        out[name] = {"pass": False, "failures": ["only in the 2-worker run"]}
    return out


def run_metrics(metrics: dict) -> dict:
    """What a run says about itself (device and backend: reported by rank 0, when present)."""
    keys = ("device", "backend", "workers", "iteration", "diverged", "target_miou")
    return {k: metrics[k] for k in keys if k in metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--arch", choices=("compact", "authors", "both"), default="both", help="model.arch"
    )
    parser.add_argument("--results", type=Path, help="results.dir (default: a temporary one)")
    args = parser.parse_args()

    from gtaray.cluster import init_ray

    started = time.perf_counter()
    init_ray()
    archs = ("compact", "authors") if args.arch == "both" else (args.arch,)
    report: dict = {
        "device": args.device,
        "atol": ATOL,
        "rtol": RTOL,
        "iterations": ITERATIONS,
        "lr": LR,
        "archs": {},
    }
    with tempfile.TemporaryDirectory(prefix="gtaray-ddp-eq-") as scratch:
        results = args.results or Path(scratch)
        for arch in archs:
            t0 = time.perf_counter()
            entry: dict = {}
            try:
                storage = results / "train"
                m1, nets1 = fit(experiment(results, args.device, arch, 1), f"{arch}-one", storage)
                m2, nets2 = fit(experiment(results, args.device, arch, 2), f"{arch}-two", storage)
                entry["runs"] = {"one_worker_batch_2": run_metrics(m1)}
                entry["runs"]["two_workers_batch_1"] = run_metrics(m2)
                entry["nets"] = compare(nets1, nets2)
                entry["pass"] = all(n["pass"] for n in entry["nets"].values())
                checks = []
                if args.device == "cuda":  # the runs must really have used the GPU
                    for run in entry["runs"].values():
                        if not str(run.get("device", "")).startswith("cuda"):
                            checks.append(f"device {run.get('device')!r}, not cuda")
                    if entry["runs"]["two_workers_batch_1"].get("backend") != "gloo":
                        checks.append("the 2-worker run did not report backend gloo")
                if m2.get("workers") != 2:
                    checks.append(f"the 2-worker run reported workers={m2.get('workers')}")
                entry["checks_failed"] = checks
                entry["pass"] = entry["pass"] and not checks
            except Exception as e:  # report it, and go on to the next arch
                entry["pass"] = False
                entry["error"] = f"{type(e).__name__}: {e}"[:2000]
            entry["seconds"] = time.perf_counter() - t0
            report["archs"][arch] = entry
            show(arch, entry)
            write(args.json, report | {"pass": False, "unfinished": True})  # survives a kill
    report["pass"] = all(e["pass"] for e in report["archs"].values())
    report["seconds"] = time.perf_counter() - started
    print(
        f"ddp equality ({args.device}): {'PASS' if report['pass'] else 'FAIL'}, "
        f"{report['seconds']:.0f} s"
    )
    write(args.json, report)
    return 0 if report["pass"] else 1


def write(path: Path | None, report: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(report, indent=2, default=_plain))


def _plain(value):
    """JSON for what metrics may hold besides numbers and strings (numpy scalars)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def show(arch: str, entry: dict) -> None:
    print(f"{arch}: {'pass' if entry['pass'] else 'FAIL'} ({entry['seconds']:.0f} s)")
    if "error" in entry:
        print(f"  error: {entry['error']}")
    for run, metrics in entry.get("runs", {}).items():
        print(f"  {run}: {metrics}")
    for name, net in entry.get("nets", {}).items():
        line = f"  {name}: max abs {net.get('max_abs', math.nan):.3g}"
        line += f", max rel {net.get('max_rel', math.nan):.3g}"
        line += f", worst {net.get('worst_over_tolerance', math.nan):.3g}x tolerance"
        if "d_feature_bias_max_abs" in net:
            line += f"; D feature biases max abs {net['d_feature_bias_max_abs']:.3g}"
            line += f" (bound {net['d_feature_bias_bound']:g})"
        print(line + ("" if net["pass"] else "  FAIL"))
        for failure in net.get("failures", []):
            print(f"    {failure}")
    for check in entry.get("checks_failed", []):
        print(f"  check failed: {check}")


if __name__ == "__main__":
    sys.exit(main())
