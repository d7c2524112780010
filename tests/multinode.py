"""A Ray cluster of several nodes on this machine, for the tests: a head with no CPUs and two
worker nodes with 1 CPU each (ray.cluster_utils.Cluster). Run as a process:

    python -m tests.multinode      # prints the address, keeps the cluster until stdin closes

It runs beside the test session's own Ray, so its dashboard gets a free port of its own.
"""

from __future__ import annotations

import os
import sys

from ray.cluster_utils import Cluster
from ray.util import get_node_ip_address

from tests.ports import free_port


def main() -> None:
    # Every process of this cluster is told its address (see gtaray.cluster.init_ray): it runs
    # beside the test session's Ray, and Ray's State API would otherwise pick the latest one.
    port = free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = f"{get_node_ip_address()}:{port}"
    small = {"object_store_memory": 80 * 1024**2}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "dashboard_port": free_port(),
            "include_dashboard": True,
            **small,
        },
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, **small)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    cluster.shutdown()


if __name__ == "__main__":
    main()
