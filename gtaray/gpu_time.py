"""GPU time from a torch.profiler trace, read off the device's timeline
(benchmarks/profile_step.py): kernels, memcpy and memset intervals, their union (concurrent
streams count once), a per-category split. Plain arithmetic on plain values, so that tests
check it on handmade spans without a GPU; torch only inside `spans_from_profiler`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple


class DeviceSpan(NamedTuple):
    """One event of a trace: `device_type` "cpu" or "cuda" (any non-CPU device counts as a
    device); `activity` the Kineto activity type when known ("kernel", "gpu_memcpy",
    "gpu_memset", "gpu_user_annotation", "cpu_op", ...), "" when not."""

    name: str
    start_us: float
    dur_us: float
    device_type: str
    activity: str = ""


# Device work: what occupies the GPU. GPU-side user annotations (record_function ranges drawn
# on the device timeline) are spans around kernels, not work, and would swallow the gaps.
DEVICE_WORK = ("kernel", "gpu_memcpy", "gpu_memset")
# Name patterns, tried in this order on the lower-cased name; the first match wins, the rest is
# "other". Layout first: cuDNN's own nchwToNhwc conversions must not count as convolution.
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "copy",  # copies and layout changes: memcpy/memset, copy_/contiguous kernels, cat
        re.compile(r"memcpy|memset|copy|contiguous|nchwtonhwc|nhwctonchw|transpose|permute"),
    ),
    ("norm", re.compile(r"norm|welford|bn_fw|bn_bw")),  # instance/batch norm, statistics
    ("optimizer", re.compile(r"adam|sgd|multi_tensor_apply")),  # Adam steps, foreach kernels
    ("convolution", re.compile(r"conv|dgrad|wgrad|fprop|cudnn")),  # cuDNN/CUTLASS convs
)


def category(name: str) -> str:
    """The category of a kernel name: copy, norm, optimizer, convolution or other."""
    lower = name.lower()
    return next((cat for cat, pattern in CATEGORIES if pattern.search(lower)), "other")


def is_device_work(span: DeviceSpan) -> bool:
    """A kernel, memcpy or memset on a device (not a CPU row, not a device annotation)."""
    if span.device_type.lower() == "cpu":
        return False
    return span.activity in DEVICE_WORK or not span.activity


def is_kernel(span: DeviceSpan) -> bool:
    """A kernel on the device (memcpy/memset are not kernels; with no activity type known,
    names such as "Memcpy HtoD" or "Memset (Device)" tell them)."""
    if not is_device_work(span):
        return False
    if span.activity:
        return span.activity == "kernel"
    return not re.match(r"mem(cpy|set)\b", span.name.lower())


def device_work(spans: Iterable[Sequence]) -> list[DeviceSpan]:
    """The device-work spans among (name, start_us, dur_us, device_type[, activity]) tuples."""
    return [s for s in (DeviceSpan(*t) for t in spans) if is_device_work(s)]


def union_us(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: overlaps (concurrent streams, nested
    ranges) count once."""
    total = 0.0
    end = -float("inf")
    start = end
    for s, e in sorted((s, e) for s, e in intervals if e > s):
        if s > end:  # a gap: close the current run
            total += end - start if end > start else 0.0
            start, end = s, e
        else:
            end = max(end, e)
    return total + (end - start if end > start else 0.0)


def gpu_summary(spans: Iterable[Sequence], steps: int = 1, top: int = 15) -> dict[str, Any]:
    """GPU time of a trace, per step, from its device timeline only (CPU rows, which repeat
    their kernels' device time, are left out):

    busy_us: the union of every kernel/memcpy/memset interval (what the GPU was doing at all);
    kernel_sum_us: the plain sum of kernel durations (above busy_us when streams overlap);
    kernels: kernel launches; by_category_us: summed durations of kernels, memcpy and memset
    per `category`; top: the `top` names by summed duration, with their launches per step.
    """
    work = device_work(spans)
    kernels = [s for s in work if is_kernel(s)]
    by_category: dict[str, float] = dict.fromkeys([c for c, _ in CATEGORIES] + ["other"], 0.0)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for s in work:
        by_category[category(s.name)] += s.dur_us / steps
        by_name[s.name][0] += s.dur_us / steps
        by_name[s.name][1] += 1
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "steps": steps,
        "busy_us": union_us((s.start_us, s.start_us + s.dur_us) for s in work) / steps,
        "kernel_sum_us": sum(s.dur_us for s in kernels) / steps,
        "kernels": len(kernels) / steps,
        "by_category_us": by_category,
        "top": [
            {"name": name, "us": us, "calls": calls / steps, "category": category(name)}
            for name, (us, calls) in ranked
        ],
    }


def spans_from_profiler(prof: Any) -> list[DeviceSpan]:
    """Every event of a finished torch.profiler.profile as a DeviceSpan.

    From `prof.events()`: torch's FunctionEvents, one per Kineto event, the device's kernels
    and memory operations among them with their own device_type and [start, end) on the
    trace's clock (CPU ops carry their kernels' times again only as attached `kernels`, never
    as intervals: reading intervals of device rows counts each kernel once).
    """
    from torch.autograd import DeviceType

    out = []
    for e in prof.events() or []:
        device = "cpu" if e.device_type == DeviceType.CPU else str(e.device_type).split(".")[-1]
        start, end = float(e.time_range.start), float(e.time_range.end)
        out.append(DeviceSpan(e.name, start, end - start, device.lower(), e.activity_type or ""))
    return out
