"""What the experiment scripts share: where results live, the provenance every result file records,
timing, and a progress bar that needs nothing beyond torch and numpy.

Only torch and numpy are imported here, so that a GPU machine with its own torch (and no
environment of ours) can run the experiments with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[3]
# Where the chapters read result files from; BNCOURSE_RESULTS_DIR points it elsewhere (the tests render
# the chapters' code on made-up CPU and GPU files that way).
RESULTS_DIR = Path(os.environ.get("BNCOURSE_RESULTS_DIR", REPO / "chapters" / "results"))


def git_commit() -> str:
    """The commit the run started from, marked when tracked files had uncommitted changes. Where the
    repository's history is not at hand (a copy of the working tree on another machine), the commit
    named by $BNCOURSE_GIT_COMMIT, marked as such, or "unknown"."""
    given = os.environ.get("BNCOURSE_GIT_COMMIT")
    if given and not (REPO / ".git").exists():
        return f"{given} (from BNCOURSE_GIT_COMMIT: copy of the working tree without .git)"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"{given} (from BNCOURSE_GIT_COMMIT)" if given else "unknown"


def environment(device) -> dict:
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()})",
        "device_type": device.type,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
    }


def timer(device):
    """Milliseconds of a callable: CUDA events on a GPU, perf_counter (after a synchronize) otherwise."""
    if device.type == "cuda":
        def measure(function):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            function()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
    else:
        def measure(function):
            started = time.perf_counter()
            function()
            return 1000 * (time.perf_counter() - started)
    return measure


def median_ms(function, device, repeats, warmup):
    measure = timer(device)
    for _ in range(warmup):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = [measure(function) for _ in range(repeats)]
    return {"median_ms": float(np.median(times)), "min_ms": float(np.min(times)), "repeats": repeats}


class _NoBar:
    def __init__(self, total=None, **_):
        self.total = total

    def update(self, n=1):
        pass

    def set_description(self, text):
        pass

    def close(self):
        pass


def progress_bar(total, show):
    """tqdm's bar when it is installed and wanted, else an object with the same methods that shows nothing."""
    if show:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _NoBar(total)
        return tqdm(total=total, unit="run")
    return _NoBar(total)
