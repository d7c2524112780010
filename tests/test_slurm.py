"""slurm/gtaray.sbatch on a real SLURM (slurmctld + two slurmd on this machine, see
tests/slurm_cluster.py), started the way a user starts it: `sbatch -N 2 slurm/gtaray.sbatch
sweep FILE ...`. Ray spans both nodes, each sized to its one granted CPU; the results go to a
file:// folder every node sees; SLURM's SIGTERM stops the sweep cleanly and --resume finishes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gtaray.results import load_curves, load_trials
from tests import slurm_cluster
from tests.conftest import EXPERIMENTS, ROOT
from tests.reliability.tally import measured

pytestmark = pytest.mark.ray
SBATCH = ROOT / "slurm" / "gtaray.sbatch"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    env = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    # What a user does before sbatch: the venv's gtaray and ray first on PATH.
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = f"{venv_bin}:{env['PATH']}"
    env.pop("RAY_ADDRESS", None)  # the job starts its own Ray
    yield env
    slurm_cluster.stop(env)


def sbatch(env, log, *args: str, wait: bool) -> subprocess.CompletedProcess:
    command = ["sbatch", "--parsable", "-N", "2", "-o", str(log), *(["--wait"] if wait else [])]
    return subprocess.run(
        [*command, str(SBATCH), *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip


def sweep(out: str, *overrides: str) -> list[str]:
    args = ["sweep", str(EXPERIMENTS / "smoke.yaml"), "--out", out]
    for o in ("sweep.seeds=[0]", *overrides):
        args += ["-o", o]
    return args


def ray_processes_of(job: str) -> str:
    """Processes still running from the job's Ray (its temp folder is in their arguments)."""
    found = subprocess.run(["pgrep", "-af", f"gtaray-ray-{job}"], capture_output=True, text=True)
    return found.stdout.strip()


def test_slurm_sigterm_stops_the_sweep_cleanly_and_a_resumed_job_finishes(tmp_path, slurm):
    out = f"file://{tmp_path}/results"
    args = sweep(out, "train.iterations=300", "train.eval_every=100")
    log = tmp_path / "first.log"
    started = time.monotonic()
    submitted = sbatch(slurm, log, *args, wait=False)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.time() + 400
    while not list((tmp_path / "results" / "smoke" / "curves").glob("*.parquet")):
        assert time.time() < deadline, log.read_text()[-3000:]
        assert slurm_cluster.job_state(slurm, job) in ("PENDING", "RUNNING"), log.read_text()
        time.sleep(1)
    measured("sbatch to the first curve row", time.monotonic() - started)
    # What --signal=B:TERM@120 does before the time limit: SIGTERM to the batch script.
    subprocess.run(["scancel", "--batch", "--signal=TERM", job], env=slurm, check=True)
    while slurm_cluster.job_state(slurm, job) in ("PENDING", "RUNNING", "COMPLETING"):
        assert time.time() < deadline + 200, log.read_text()[-3000:]
        time.sleep(1)
    text = log.read_text()
    assert "gtaray exited with status 143" in text, text[-3000:]
    assert "stopped by SIGTERM" in text and "--resume" in text
    assert "Traceback" not in text
    assert "Ray stopped on 2 node(s)" in text
    assert ray_processes_of(job) == ""

    # The chained job (`sbatch --dependency=afterany:JOB ... --resume`) finishes the sweep,
    # one trial on each 1-CPU node at the same time, and stops Ray on both.
    second = tmp_path / "second.log"
    resumed = sbatch(slurm, second, *args, "--resume", wait=True)
    text = second.read_text()
    assert resumed.returncode == 0, text[-3000:]
    assert "2 node(s)" in text and "Ray stopped on 2 node(s)" in text, text[-3000:]
    assert ray_processes_of(resumed.stdout.strip().split(";")[0]) == ""
    rows = load_trials(out, "smoke")
    assert len(rows) == 2 and (rows["status"] == "completed").all()
    assert rows["node_id"].nunique() == 2
    for trial_id, curve in load_curves(out, "smoke").groupby("trial_id"):
        assert curve["iteration"].tolist() == [100, 200, 300], trial_id
