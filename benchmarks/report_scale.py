"""`gtaray report` on many trials: an experiment's rows and curves copied under new trial ids.

    python benchmarks/report_scale.py --from results/ablations --trials 2000 --out /tmp/many
    python benchmarks/report_scale.py --out /tmp/many --repeats 3       # time an existing copy
    python benchmarks/report_scale.py --out s3://bucket/many ...        # on an object store

Writes (unless the copy is there) `--trials` trials into `<out>/<experiment>/`, each a row and
a curve of the source experiment with a new trial id, then times `gtaray report <out>
--experiment <name>` as a whole process (`--repeats` times) and prints the times in seconds.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    name = copy(args.source, args.out, args.trials) if args.source else args.experiment
    gtaray = Path(sys.executable).parent / "gtaray"
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        cmd = [str(gtaray), "report", args.out, "--experiment", name, "--format", "csv"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(round(time.perf_counter() - start, 2))
    median = sorted(times)[len(times) // 2]
    print(f"gtaray report, {name} at {args.out}: {times} s (median {median})")


if __name__ == "__main__":
    main()
