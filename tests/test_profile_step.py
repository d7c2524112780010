"""benchmarks/profile_step.py's GPU time comes from the device's timeline, each kernel once: the
arithmetic (gtaray.gpu_time) on handmade traces, and the extraction on a real CPU-only trace."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from gtaray.gpu_time import (
    DeviceSpan,
    category,
    device_work,
    gpu_summary,
    spans_from_profiler,
    union_us,
)

ROOT = Path(__file__).resolve().parents[1]


def test_union_merges_overlapping_and_nested_intervals():
    assert union_us([]) == 0.0
    assert union_us([(0, 10), (20, 25)]) == 15  # disjoint
    assert union_us([(0, 10), (5, 15)]) == 15  # overlapping (two streams)
    assert union_us([(0, 100), (10, 20), (30, 40)]) == 100  # nested
    assert union_us([(30, 40), (0, 10), (10, 20)]) == 30  # unsorted, touching: [0, 20) + 10
    assert union_us([(5, 5), (7, 6)]) == 0  # empty and reversed intervals add nothing


def test_kernel_on_an_op_row_and_its_kernel_row_counts_once():
    trace = [
        # The ATen op on the CPU: 100 us of host time, launching two kernels.
        ("aten::convolution", 0.0, 100.0, "cpu", "cpu_op"),
        ("cudaLaunchKernel", 10.0, 5.0, "cpu", "cuda_runtime"),
        # Its kernels on the device, on two streams, overlapping by 10 us.
        ("implicit_convolve_sgemm", 50.0, 40.0, "cuda", "kernel"),
        ("nchwToNhwcKernel", 80.0, 20.0, "cuda", "kernel"),
        # A record_function range drawn on the GPU timeline: not work.
        ("ProfilerStep#1", 0.0, 1000.0, "cuda", "gpu_user_annotation"),
        ("Memcpy HtoD (Pageable -> Device)", 200.0, 10.0, "cuda", "gpu_memcpy"),
    ]
    gpu = gpu_summary(trace)
    assert gpu["busy_us"] == 50 + 10  # [50, 100) and [200, 210)
    assert gpu["kernel_sum_us"] == 60  # kernels only: no memcpy, no CPU row
    assert gpu["kernels"] == 2
    assert gpu["by_category_us"] == {
        "copy": 30.0,  # the layout change and the memcpy
        "norm": 0.0,
        "optimizer": 0.0,
        "convolution": 40.0,
        "other": 0.0,
    }
    assert [k["name"] for k in gpu["top"]] == [
        "implicit_convolve_sgemm",
        "nchwToNhwcKernel",
        "Memcpy HtoD (Pageable -> Device)",
    ]


def test_cpu_events_are_excluded_and_figures_are_per_step():
    trace = [("aten::mm", 0.0, 50.0, "cpu"), ("aten::add_", 60.0, 5.0, "cpu")]
    assert device_work(trace) == []
    assert gpu_summary(trace)["busy_us"] == 0.0
    steps = [("k", 100.0 * i, 10.0, "cuda", "kernel") for i in range(3)]
    gpu = gpu_summary(steps + trace, steps=3)
    assert gpu["busy_us"] == 10 and gpu["kernel_sum_us"] == 10 and gpu["kernels"] == 1
    assert gpu["top"] == [{"name": "k", "us": 10.0, "calls": 1.0, "category": "other"}]


def test_without_an_activity_type_device_rows_still_count():
    gpu = gpu_summary([("k", 0.0, 10.0, "cuda"), ("Memset (Device)", 5.0, 10.0, "cuda")])
    assert gpu["busy_us"] == 15 and gpu["kernel_sum_us"] == 10 and gpu["kernels"] == 1
    assert DeviceSpan("k", 0, 1, "cuda").activity == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("void at::native::elementwise_kernel<128, 4, direct_copy_kernel_cuda>", "copy"),
        ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float>", "copy"),
        ("cudnn::ops::nchwToNhwcKernel<float>", "copy"),
        ("void at::native::batch_norm_collect_statistics_kernel<float>", "norm"),
        ("void at::native::welford_kernel<float>", "norm"),
        ("multi_tensor_apply_kernel<FusedAdamMathFunctor<float>>", "optimizer"),
        ("sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw", "convolution"),
        ("sm80_xmma_dgrad_implicit_gemm_indexed_tf32f32", "convolution"),
        ("void cudnn::cnn::wgrad_alg0_engine<float, 128, 6>", "convolution"),
        ("void implicit_convolve_sgemm<float, float, 1024>", "convolution"),
        ("void at::native::vectorized_elementwise_kernel<4, AUnaryFunctor<float>>", "other"),
    ],
)
def test_categories(name, expected):
    assert category(name) == expected


def _matmul_trace(steps: int) -> profile:
    a = torch.randn(32, 32)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            a = torch.tanh(a @ a)
    return prof


def test_real_cpu_trace_has_no_gpu_time():
    spans = spans_from_profiler(_matmul_trace(3))
    assert any(s.name == "aten::mm" and s.dur_us > 0 for s in spans)  # the trace was read
    assert all(s.device_type == "cpu" for s in spans)
    gpu = gpu_summary(spans, steps=3)
    assert gpu["busy_us"] == 0 and gpu["kernel_sum_us"] == 0 and gpu["kernels"] == 0
    assert gpu["top"] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_profile_step_profiled_runs_on_cpu():
    spec = importlib.util.spec_from_file_location(
        "profile_step", ROOT / "benchmarks" / "profile_step.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a = torch.randn(32, 32)

    def step() -> None:
        torch.tanh(a @ a)

    figures, _ = module.profiled(step, steps=2)
    assert figures["profiled_steps"] == 2 and figures["profiled_wall_s"] > 0
    assert figures["gpu_busy_s"] == 0 and figures["gpu_kernel_sum_s"] == 0
    assert figures["gpu_event_wall_s"] is None and figures["kernels_per_step"] == 0
    assert figures["top_kernels"] == []
