"""`gtaray report` on many trials: an experiment's rows and curves copied under new trial ids.

    python benchmarks/report_scale.py --from results/ablations --trials 2000 --out /tmp/many
    python benchmarks/report_scale.py --out /tmp/many --repeats 3       # time an existing copy
    python benchmarks/report_scale.py --out s3://bucket/many ...        # on an object store
    python benchmarks/report_scale.py --moto --out s3://many/many ...   # on moto's S3, here

Writes (unless the copy is there) `--trials` trials into `<out>/<experiment>/`, each a row and
a curve of the source experiment with a new trial id, then times `gtaray report <out>
--experiment <name>` as a whole process (`--repeats` times) and prints the times in seconds.
The first report of a copy builds the experiment's index (gtaray.parquet_folder); the later
ones read through it. `--moto` starts moto's S3 server on 127.0.0.1 for the run, with the
bucket of `--out`, and points the AWS variables at it (tests/s3_server.py, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def copy(source: Path, out: str, count: int) -> str:
    """The source's files, byte for byte but for the trial id, under the new ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gtaray.storage import Store

    name, src, dst = source.name, Store.at(source.parent), Store.at(out)
    files = src.names(f"{name}/trials", ".parquet")
    for i in range(count):
        trial = files[i % len(files)].removesuffix(".parquet")
        trial_id = f"{trial}-copy{i}"
        for folder in ("trials", "curves"):
            key = f"{name}/{folder}/{trial}.parquet"
            if not src.exists(key):
                continue
            table = pq.read_table(pa.BufferReader(src.read_bytes(key)))
            ids = pa.array([trial_id] * len(table), pa.string())
            table = table.set_column(table.schema.get_field_index("trial_id"), "trial_id", ids)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            dst.write_atomic(f"{name}/{folder}/{trial_id}.parquet", sink.getvalue().to_pybytes())
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="results folder (or URI) of the copy")
    parser.add_argument("--from", dest="source", type=Path, help="an experiment folder to copy")
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--experiment", help="the copy's experiment name (default: --from's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moto", action="store_true", help="run on a local moto S3 server")
    parser.add_argument(
        "--before",
        type=Path,
        help="also time the report of this checkout of gtaray (PYTHONPATH), interleaved",
    )
    parser.add_argument("--json", type=Path, help="also write the times here")
    args = parser.parse_args()
    if args.moto:
        from tests.s3_server import local_s3

        if not args.out.startswith("s3://"):
            parser.error("--moto needs --out s3://<bucket>/<folder>")
        with local_s3(args.out.removeprefix("s3://").split("/")[0]):
            measure(args)
    else:
        measure(args)


def measure(args: argparse.Namespace) -> None:
    name = copy(args.source, args.out, args.trials) if args.source else args.experiment
    gtaray = Path(sys.executable).parent / "gtaray"
    cmd = [str(gtaray), "report", args.out, "--experiment", name, "--format", "csv"]
    checkouts = {"this": None} | ({"before": str(args.before)} if args.before else {})
    times: dict[str, list[float]] = {c: [] for c in checkouts}
    for _ in range(args.repeats):  # A, B, A, B: both see the same machine
        for label, path in checkouts.items():
            env = os.environ | ({"PYTHONPATH": path} if path else {})
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            times[label].append(round(time.perf_counter() - start, 2))
    summary = {"out": args.out, "experiment": name, "cpus": os.cpu_count(), "runs": {}}
    for label, seconds in times.items():
        median = sorted(seconds)[len(seconds) // 2]
        print(f"gtaray report ({label}), {name} at {args.out}: {seconds} s (median {median})")
        summary["runs"][label] = {"seconds": seconds, "median": median}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
