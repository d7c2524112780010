"""The paper's feature-space study: are target images embedded among source images?

    gtaray analyze knn results/abl/train/<trial>/checkpoint_... results/abl/train/<other>/...

For each checkpoint, F embeds the held-out source and target validation images (fc7, averaged
over positions). For each target image, its k nearest neighbours by cosine distance among all
other embeddings are taken; the reported number is the mean fraction of them that are source
images. Aligned domains give about n_source / (n_source + n_target - 1) (0.5 for equal sets);
separated domains give about 0. No Ray here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from gtaray.config import Experiment
from gtaray.storage import Store


def source_fraction(source: np.ndarray, target: np.ndarray, k: int) -> float:
    """Mean fraction of source points among each target point's k nearest neighbours (cosine
    distance, the point itself excluded)."""
    points = np.concatenate([source, target]).astype(np.float64)
    points /= np.linalg.norm(points, axis=1, keepdims=True).clip(min=1e-12)
    is_source = np.arange(len(points)) < len(source)
    similarity = points[len(source) :] @ points.T
    similarity[np.arange(len(target)), len(source) + np.arange(len(target))] = -np.inf
    k = min(k, len(points) - 1)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return float(is_source[nearest].mean())


@torch.no_grad()
def embed(f: torch.nn.Module, dataset, limit: int, batch: int = 8) -> np.ndarray:
    """fc7 features of the first `limit` images, averaged over positions: N x C."""
    f.eval()
    out = []
    for start in range(0, min(limit, len(dataset)), batch):
        images = [dataset[i]["image"] for i in range(start, min(start + batch, limit))]
        fc7 = f(torch.stack(images))[0]
        out.append(fc7.mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


@dataclass
class KnnResult:
    checkpoint: str
    experiment: str
    variant: str
    iteration: int
    k: int
    n_source: int
    n_target: int
    source_fraction: float


def analyze(checkpoint: str, k: int = 10, images: int = 100) -> KnnResult:
    """Embed a checkpoint's validation images with its F and measure the k-NN mixing."""
    from gtaray.data.splits import make_splits
    from gtaray.method import lsd

    blob = Store.at(checkpoint).read_bytes("state.pt")
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if "experiment" not in state:
        raise ValueError(f"{checkpoint}: this checkpoint does not record its experiment")
    exp = Experiment.model_validate(state["experiment"])
    nets = lsd.build(exp.with_updates({"model.pretrained": None}))  # weights come from state
    nets.F.load_state_dict(state["nets"]["F"])
    splits = make_splits(exp)
    source = embed(nets.F, splits.source_val, images)
    target = embed(nets.F, splits.target_val, images)
    fraction = source_fraction(source, target, k)
    return KnnResult(
        checkpoint, exp.name, exp.method.variant, int(state["iteration"]), k, len(source),
        len(target), fraction,
    )  # fmt: skip


def print_knn(results: list[KnnResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    k = results[0].k if results else 0
    table = Table(title=f"target images' {k} nearest neighbours in F's fc7 space")
    for h in ("checkpoint", "experiment", "variant", "iteration", "source:target", "fraction"):
        table.add_column(h, justify="right" if h in ("iteration", "fraction") else "left")
    for r in results:
        table.add_row(
            r.checkpoint, r.experiment, r.variant, str(r.iteration),
            f"{r.n_source}:{r.n_target}", f"{r.source_fraction:.3f}",
        )  # fmt: skip
    Console(width=200).print(table)
    print("fraction: source images among each target image's neighbours (higher = aligned)")
