"""The capture workers' status files (``DIR/status-N.json``, rewritten every second) and their
counters added up: what ``/status``, ``/metrics``, the service's watchdog and the exit summary read."""

from __future__ import annotations

import glob
import json
import os
import time


def merge_counters(statuses: list) -> dict:
    """The workers' counters added up: every number, and the parse errors by class; of the
    times, the latest packet's."""
    merged: dict = {"errors": {}}
    for s in statuses:
        for key, v in s.items():
            if key == "last_packet_at":
                if v is not None:
                    merged[key] = max(merged.get(key) or v, v)
            elif (
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and key not in ("worker", "workers", "time", "age_s")
            ):
                merged[key] = merged.get(key, 0) + v
            elif key == "errors":
                for e, c in v.items():
                    merged["errors"][e] = merged["errors"].get(e, 0) + c
    return merged


def read_statuses(out_dir: str, workers: int | None = None) -> list:
    """The workers' status files (rewritten every second), each with its ``age_s``: workers
    0..N-1, or every status file in the directory."""
    paths = (
        [os.path.join(out_dir, f"status-{k}.json") for k in range(workers)]
        if workers is not None
        else sorted(glob.glob(os.path.join(out_dir, "status-*.json")))
    )
    out = []
    for p in paths:
        try:
            with open(p) as f:
                s = json.load(f)
            s["age_s"] = round(time.time() - os.path.getmtime(p), 3)
            out.append(s)
        except (OSError, ValueError):
            continue
    return out


def merge_status(out_dir: str, workers: int) -> dict:
    return {**merge_counters(read_statuses(out_dir, workers)), "workers": workers}
