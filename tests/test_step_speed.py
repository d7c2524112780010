"""The GPU fast path's building blocks, checked on the CPU: an instance norm that keeps
channels_last, compiled frozen passes that never recompile, and uint8 batches normalised on the
device. Each must leave the numbers where the plain PyTorch path puts them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gtaray.models.layers import InstanceNorm2d

LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_equals_torch_and_keeps_the_layout(layout, affine):
    torch.manual_seed(0)
    ours, theirs = InstanceNorm2d(6, affine=affine), nn.InstanceNorm2d(6, affine=affine)
    if affine:  # non-trivial affine parameters, the same in both
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-1, 1)
        ours.load_state_dict(theirs.state_dict())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = (torch.randn(2, 6, 9, 13) * 3 + 1).to(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert ya.is_contiguous(memory_format=layout)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(ya)
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    assert xa.grad.is_contiguous(memory_format=layout)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    if affine:
        for name in ("weight", "bias"):
            torch.testing.assert_close(
                getattr(ours, name).grad, getattr(theirs, name).grad, atol=1e-4, rtol=1e-5
            )


def test_instance_norm_reduces_bf16_in_fp32_and_keeps_float64():
    torch.manual_seed(0)
    # A large mean: bf16 sums would lose the variance. Compared on the same rounded input,
    # the only difference left is the output's rounding to bf16.
    x = (torch.randn(1, 4, 16, 16) * 100 + 1000).bfloat16()
    x = x.to(memory_format=torch.channels_last)  # NCHW input takes torch's own path
    y = InstanceNorm2d(4)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), nn.InstanceNorm2d(4)(x.float()), atol=2e-2, rtol=1e-2)
    assert InstanceNorm2d(4)(x.double()).dtype == torch.float64


@pytest.mark.parametrize("input_format", ["rgb_imagenet", "bgr_caffe"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_compact_batches_expand_on_the_device_to_todays_batches(
    tmp_path, input_format, channels_last
):
    from gtaray.config import load_experiment
    from gtaray.data.cityscapes import Cityscapes
    from gtaray.data.gta5 import GTA5
    from gtaray.data.pairs import TripletStream
    from gtaray.runtime import to_device
    from tests.conftest import EXPERIMENTS
    from tests.test_data_options import make_cityscapes_ramps, make_gta5_ramps

    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [f"model.input_format={input_format}", f"train.channels_last={channels_last}"],
    )
    # Real loaders, random crops per visit: the compact path must draw the same crops.
    common = dict(crop="random", seed=4, input_format=input_format)
    source = GTA5(make_gta5_ramps(tmp_path / "gta5", [(182, 120)] * 3), 182, 91, **common)
    make_cityscapes_ramps(tmp_path / "cs", "train", {"aachen": 2}, (182, 110))
    target = Cityscapes(tmp_path / "cs", "train", 182, 91, **common)
    floats = TripletStream(source, target, batch_size=2, seed=4)
    compact = TripletStream(source, target, batch_size=2, seed=4, compact=True)
    device = torch.device("cpu")
    for _ in range(5):  # past an epoch of each side
        want, raw = next(floats), next(compact)
        assert {v.dtype for v in raw.values()} == {torch.uint8}
        assert sum(v.nbytes for v in want.values()) == 8 * sum(v.nbytes for v in raw.values())
        got = to_device(raw, device, exp)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key].dtype == value.dtype, key
            torch.testing.assert_close(got[key], value, atol=1e-6, rtol=0, msg=key)
            if channels_last and value.ndim == 4:
                assert got[key].is_contiguous(memory_format=torch.channels_last), key


def test_compact_stream_refuses_datasets_without_compact_samples():
    from gtaray.data.pairs import TripletStream
    from tests.test_pairs import Numbered

    with pytest.raises(TypeError, match=r"Numbered\.compact"):
        TripletStream(Numbered(3), Numbered(3), 1, seed=0, compact=True)


def test_synthetic_scenes_compact_samples_expand_to_their_samples():
    from gtaray.data.synthetic import SyntheticScenes
    from gtaray.data.transforms import expand

    ds = SyntheticScenes("target", "train", 2, 64, 32, num_classes=16)
    image, rgb, label = expand(
        **{k: v for k, v in ds.compact(1).items()}, input_format="rgb_imagenet"
    )
    for key, value in (("image", image), ("rgb", rgb), ("label", label)):
        assert torch.equal(value, ds[1][key]), key


@pytest.mark.parametrize("variant", ["full", "feature_d"])
def test_compiled_frozen_passes_never_recompile_and_match_eager(variant):
    """Every role (trained net, frozen net inside another's update, F without gradient) is a
    compiled callable of its own: flipping requires_grad between updates must not recompile.
    aot_eager: dynamo's graphs and guards as with inductor, without its CPU code generation
    (minutes here); inductor's numbers are checked in test_fast_paths."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from gtaray.config import load_experiment
    from gtaray.data.synthetic import example_batch
    from gtaray.method import lsd
    from gtaray.runtime import compile_nets, place
    from tests.conftest import EXPERIMENTS

    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml",
        # channels_last: the instance norm's own autograd.Function goes through dynamo too.
        [f"method.variant={variant}", "model.dropout=0.0", "train.compile=true"]
        + ["train.channels_last=true"],
    )
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        nets = lsd.build(exp)
        place(nets, exp, torch.device("cpu"))
        runs.append((nets, lsd.make_optimizers(nets, exp)))
        if compiled:
            torch._dynamo.reset()
            counters.clear()
            compile_nets(nets, exp, backend="aot_eager")
    assert set(runs[1][0].frozen_calls) == {name for name, _ in runs[1][0].items()}
    graphs = []
    for i in range(3):
        batch = example_batch(exp.with_updates({"train.seed": i}))
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                 for k, v in batch.items()}  # fmt: skip
        eager, fast = (lsd.train_step(nets, opts, batch, exp) for nets, opts in runs)
        assert eager.keys() == fast.keys()
        for key in eager:
            assert fast[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-6), (i, key)
        graphs.append(dict(counters["stats"]) | {"frames": counters["frames"]["total"]})
    # Each net trained once plus its frozen roles: more graphs than nets, so frozen passes
    # are compiled; none added after the first iteration, so nothing recompiled.
    assert graphs[0]["unique_graphs"] > len(runs[1][0].items())
    assert graphs[0] == graphs[1] == graphs[2]
