"""A real SLURM on this machine, for the tests: slurmctld and two slurmd (nodes n1 and n2, one
CPU each) from Debian's slurm-wlm, authenticated by munge. Installed with apt-get when missing
(the tests run as root here and in CI). Everything lives in one folder; `stop` shuts it down.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.ports import free_port

NODES = ("n1", "n2")


def install() -> None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"],
    ):
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=900)


def _config(folder: Path) -> str:
    host = socket.gethostname()
    lines = [
        "ClusterName=gtaray-tests",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool/%n",
        f"SlurmctldPidFile={folder}/slurmctld.pid",
        f"SlurmdPidFile={folder}/slurmd-%n.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log",
        f"SlurmdLogFile={folder}/slurmd-%n.log",
        # No cgroups in a container: processes are tracked by their parent ids.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "KillWait=30",  # SIGTERM, then SIGKILL 30 s later, as on a real cluster
    ]
    for name in NODES:
        lines.append(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} "
            "CPUs=1 RealMemory=4000"
        )
    lines.append(
        f"PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP"
    )
    return "\n".join(lines) + "\n"


def start(folder: Path) -> dict[str, str]:
    """Start munge (if not running), slurmctld and the two slurmd; the environment to pass to
    sbatch and friends."""
    install()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state").mkdir(exist_ok=True)
    for name in NODES:
        (folder / "spool" / name).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["munged", "--force"], check=True, capture_output=True, timeout=60)
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, timeout=60)
    for name in NODES:
        subprocess.run(["slurmd", "-f", str(conf), "-N", name], check=True, env=env, timeout=60)
    deadline = time.time() + 60
    while True:
        states = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True
        ).stdout.split()
        if len(states) == len(NODES) and all(s == "idle" for s in states):
            return env
        if time.time() > deadline:
            raise RuntimeError(f"SLURM nodes not idle: {states}; logs in {folder}")
        time.sleep(0.5)


def stop(env: dict[str, str]) -> None:
    subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=60)


def job_state(env: dict[str, str], job: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", job, "-o"], env=env, capture_output=True, text=True
    ).stdout
    for field in out.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "GONE"
