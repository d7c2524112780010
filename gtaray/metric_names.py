"""The names under which a trial's metrics are reported and stored, shared by the Ray worker
(gtaray.evaluate) and the results tables (gtaray.results). Kept apart from gtaray.results so
that a worker building a metric name does not load pandas and pyarrow."""

from __future__ import annotations


def iou_column(class_name: str) -> str:
    """Column (and metric) name of a class's IoU: `iou_traffic_light`."""
    return f"iou_{class_name.replace(' ', '_')}"


# A result that hands Tune a row already on disk (a trial finished before a sweep was killed):
# not a new measurement, so schedulers, writers and trackers pass it by.
ALREADY_RECORDED = "already_recorded"
