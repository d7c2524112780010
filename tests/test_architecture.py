"""The never-rules of docs/architecture.md, checked on the import graph of gtaray's source.

The graph is read from the code (every `import` and `from ... import`, at any depth of a
module, so imports inside functions count), and a rule that breaks names the chain of modules
that breaks it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gtaray"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """gtaray module -> every module it imports (gtaray's own modules by their full name)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                # `from gtaray.data import splits` imports the module gtaray.data.splits
                found |= {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
        graph[name] = found
    return graph


GRAPH = import_graph()


def chains(start: str, forbidden: tuple[str, ...]) -> list[list[str]]:
    """Every shortest import chain from `start` through gtaray modules to a forbidden package."""
    found, seen, frontier = [], {start}, [[start]]
    while frontier:
        nxt = []
        for chain in frontier:
            for dep in sorted(GRAPH.get(chain[-1], ())):
                if dep.split(".")[0] in forbidden:
                    found.append([*chain, dep])
                elif dep in GRAPH and dep not in seen:
                    seen.add(dep)
                    nxt.append([*chain, dep])
        frontier = nxt
    return found


def under(prefix: str) -> list[str]:
    return sorted(m for m in GRAPH if m == prefix or m.startswith(prefix + "."))


def test_the_graph_is_read():
    # A reader that found nothing would pass every rule.
    assert "gtaray.method.lsd" in GRAPH and "gtaray.models.generator" in GRAPH["gtaray.method.lsd"]
    assert chains("gtaray.sweep", ("ray",)), "gtaray.sweep imports ray; the reader missed it"


@pytest.mark.parametrize("module", under("gtaray.models") + under("gtaray.method"))
def test_networks_and_the_method_never_import_ray(module):
    assert not chains(module, ("ray",)), " -> ".join(chains(module, ("ray",))[0])


@pytest.mark.parametrize("module", under("gtaray.data") + ["gtaray.config", "gtaray.metrics"])
def test_data_config_and_metrics_never_import_ray(module):
    assert not chains(module, ("ray",)), " -> ".join(chains(module, ("ray",))[0])


# What runs in a Ray worker besides Ray Train itself: the loop and everything it reaches.
WORKER = "gtaray.train"


def test_the_worker_never_imports_the_tables_or_the_search():
    """The worker builds metrics and checkpoints; the results tables (pandas), the search
    (optuna) and the terminal views (rich) belong to the driver."""
    broken = chains(WORKER, ("pandas", "optuna", "rich", "typer"))
    assert not broken, "\n".join(" -> ".join(c) for c in broken)


SWEEP_ROOM = ["gtaray.sweep", "gtaray.seed_groups", "gtaray.seed_asha", "gtaray.ablation",
              "gtaray.study", "gtaray.stopping"]  # fmt: skip


@pytest.mark.parametrize("module", SWEEP_ROOM)
def test_the_sweep_reaches_the_worker_only_through_launch(module):
    assert module in GRAPH
    assert WORKER not in GRAPH[module], f"{module} imports {WORKER}; go through gtaray.trainer"


def test_the_method_stack_loads_without_pandas_in_a_fresh_interpreter():
    # ray.train itself imports pandas, so this checks what gtaray adds: the evaluation, the
    # step, the checkpoints and the sample grids a worker loads.
    code = (
        "import sys\n"
        "import gtaray.evaluate, gtaray.runtime, gtaray.checkpoint, gtaray.samples\n"
        "print(sorted(m for m in ('pandas', 'optuna', 'ray', 'rich') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_workers_storage_loads_nothing_ray_trains_own_storage_has_not():
    # The worker writes its sample grids through Store (results.dir may be an object store
    # the driver's machine does not share); Ray Train's worker-side storage already loads
    # pyarrow.fs, so Store may add gtaray's own modules and nothing else.
    code = (
        "import sys\n"
        "import ray.train.v2._internal.execution.storage\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import gtaray.storage\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['gtaray']", out.stdout


def test_the_config_loads_without_torch():
    # `gtaray sweep --dry-run` and every bad-input refusal go through the config alone.
    code = "import sys, gtaray.config\nprint('torch' in sys.modules, 'ray' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False", out.stdout
