"""The installed stack: a broken torch / torchvision pair must fail CI here."""

import torch
import torchvision


def test_torchvision_imports_and_runs_an_op_with_this_torch():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [50, 50, 60, 60]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.__version__.startswith("2.14") and torchvision.__version__.startswith("0.29")


def test_gtaray_imports_without_ray():
    import subprocess
    import sys

    code = (
        "import sys, gtaray.config, gtaray.method.lsd, gtaray.metrics, gtaray.data.splits, "
        "gtaray.plan, gtaray.results, gtaray.report, gtaray.report_run, gtaray.preflight, "
        "gtaray.storage, gtaray.evaluate, gtaray.samples, gtaray.knn, gtaray.checkpoint; "
        "assert 'ray' not in sys.modules, 'the method and data must not import Ray'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
