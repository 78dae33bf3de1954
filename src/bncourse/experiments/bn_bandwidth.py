"""Batch norm's speed as memory traffic: each implementation's train-mode forward and backward against
the fewest bytes they must move and the device's measured copy bandwidth.

    python -m bncourse.experiments.bn_bandwidth [--size tiny|cpu|gpu] [--out DIR]

runs on CUDA when it is available (else on the CPU, with the ``cpu`` size unless told otherwise) and
writes ``DIR/bn_bandwidth_<size>.json``: the device, the torch, CUDA, cuDNN and Triton versions, the
date, the git commit, the exact command and settings, and every number below. The chapters read these
files through ``load_results()`` and ``bandwidth_table()``; nobody types a measured number.

What it measures, for an NCHW tensor in float32 and in bfloat16 (gamma, beta and the statistics in
float32, as ``nn.BatchNorm2d`` keeps them under mixed precision):

* ``bytes``: the fewest bytes each pass must move through device memory (``minimum_bytes``, which
  says item by item what it counts). A train-mode forward cannot write any ``y`` before it has seen
  every element of its channel, so when the tensor is larger than the chip's caches it reads ``x``
  twice (once for the statistics, in one pass with Welford's update; a two-pass mean-then-variance
  reads it three times) and writes ``y`` once. The backward reads ``x`` and ``dy`` for the two
  per-channel sums, reads them again to form ``dx``, and writes ``dx``. The per-channel vectors
  (gamma, beta, running and saved statistics, dgamma, dbeta) are counted too; they are tiny.
* ``copy_bandwidth``: a device-to-device copy of a buffer as large as the float32 tensor, in the same
  run, counting bytes read plus bytes written; and, to show that the tensor is not served from a
  cache, the same copy of a small buffer.
* each implementation (``IMPLEMENTATIONS``): ``torch.nn.functional.batch_norm`` (cuDNN on a GPU), the
  same on the channels-last layout, the course's hand-written batch norm in composite torch ops
  (``bn_training.handwritten_batchnorm``) and that code under ``torch.compile``, and the course's own
  Triton kernels (``bn_triton``; CUDA only). Each is first checked against a float64 reference on
  fresh random inputs (``check_implementation``: every output element, after the memory it is written
  to was filled with NaN where the allocator allows), then timed (medians of repeated runs after
  warm-up; CUDA events on a GPU). It is reported as achieved bandwidth (counted bytes over median
  time) and as a fraction of the measured copy bandwidth. One that cannot run here is recorded as
  skipped with the reason, one that fails its check as failed with the errors, never dropped.
* ``statistics_dtypes``: in which dtype ``nn.BatchNorm2d`` keeps its running statistics and saves the
  batch mean and inverse standard deviation for the backward pass, for float32 and bfloat16 inputs and
  under bfloat16 autocast.

Only torch and numpy are needed (and Triton for the kernels on CUDA), so a GPU machine's own torch
runs it with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import sys
import textwrap
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bncourse.experiments.bn_training import handwritten_batchnorm
from bncourse.experiments.common import RESULTS_DIR, environment, median_ms, progress_bar

SCHEMA_VERSION = 1
EPS = 1e-5
MOMENTUM = 0.1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
STATISTICS_DTYPE = torch.float32           # gamma, beta, running and saved statistics, dgamma, dbeta
IMPLEMENTATIONS = (
    "torch.nn.functional.batch_norm",
    "batch_norm, channels-last",
    "hand-written (composite ops)",
    "hand-written, torch.compile",
    "course Triton kernel",
)
PASSES = ("forward", "backward")

# Sizes: "tiny" is the test suite's (seconds), "cpu" the committed CPU run (a minute or two on 2 cores),
# "gpu" the recorded GPU run (256 x 256 x 56 x 56: 205 million elements, 822 MB in float32, far more
# than an H100's or H200's 50-60 MB of L2 cache). Estimated, not yet measured, for the gpu size: at
# most 2.5 minutes on one H100/H200, most of it torch.compile compiling the hand-written code four
# times (two dtypes, two shapes; 13 s for a small shape on this project's CPU); the timings are
# 35 x 5 calls per pass, implementation and dtype at 0.2 to 10 ms a call (822 MB at 3-4 TB/s, times
# the passes each implementation makes), and each check runs a float64 reference over the tensor. The cpu tensor, 103 MB in float32 and 51 MB in
# bfloat16, is as large as this project's 2-core machine (24 GB, shared) allows for a run of seconds;
# its L3 is reported as 480 MiB, but that is the host's, shared by all of its cores, and copies slow
# down from a few tens of MB on. Each run records the copy of a small buffer (``cache_resident_copy``)
# beside the copy of a buffer of the tensor's size (``copy_bandwidth``): their ratio says how far the
# tensor is from staying in cache. ``check_shapes`` are further, awkward shapes (odd sizes, a spatial
# size that is no multiple of a tile) on which each implementation is checked besides the timed shape.
SIZES = {
    "tiny": {"shape": [4, 3, 5, 7], "check_shapes": [[3, 2, 3, 5]], "dtypes": ["float32", "bfloat16"],
             "repeats": 3, "warmup": 1, "inner": 1, "compile": False, "cache_copy_bytes": 2 ** 16},
    "cpu": {"shape": [128, 64, 56, 56], "check_shapes": [[3, 5, 7, 11]], "dtypes": ["float32", "bfloat16"],
            "repeats": 10, "warmup": 2, "inner": 1, "compile": True, "cache_copy_bytes": 4 * 2 ** 20},
    "gpu": {"shape": [256, 256, 56, 56], "check_shapes": [[3, 5, 7, 11]], "dtypes": ["float32", "bfloat16"],
            "repeats": 30, "warmup": 5, "inner": 5, "compile": True, "cache_copy_bytes": 16 * 2 ** 20},
}

# Tolerances of the checks against float64, per dtype of the tensors. "normwise": ||out - ref|| / ||ref||
# over the whole output; "elementwise": max |out - ref| / (s + |ref|), where s is 1 for y, dx and the
# running statistics (entries of order 1 by construction of the inputs) and the root mean square of
# the reference for dgamma and dbeta (sums over a channel, of order sqrt(N*H*W)). float32 results land
# near 1e-7, or a few 1e-5 where float32 sums run over hundreds of thousands of elements (seen with
# PyTorch's channels-last CPU kernel on the cpu size); bfloat16 outputs carry their own rounding, 2^-9
# relative. A wrong formula, a wrong axis or an element never written is off by far more.
TOLERANCES = {"float32": {"normwise": 1e-4, "elementwise": 1e-3},
              "bfloat16": {"normwise": 1e-2, "elementwise": 1e-2}}


# ---------------------------------------------------------------------------------------------
# The bytes each pass must move
# ---------------------------------------------------------------------------------------------

def minimum_bytes(shape, element_bytes, statistic_bytes=4) -> dict:
    """The fewest bytes that train-mode batch norm's forward and backward must move through device
    memory for an (N, C, H, W) tensor of ``element_bytes`` per element, when the tensor is much larger
    than the on-chip caches (so what is read twice is fetched twice). Per pass: ``items`` (what each
    term counts, and its bytes), ``floor`` (their sum, the count that bandwidths are computed from),
    and, for comparison, ``if_cached`` (every tensor read once: only possible if a channel's data
    stayed on chip between the two readings) and, for the forward, ``two_pass_statistics`` (a mean
    pass and a separate variance pass: x read three times)."""
    n, c, h, w = shape
    tensor = n * c * h * w * element_bytes
    vector = c * statistic_bytes
    forward = [   # (what, bytes, whether it is one of the whole tensors)
        ("x read for the per-channel mean and variance (one pass: Welford's update)", tensor, True),
        ("x read again to normalize", tensor, True),
        ("y written", tensor, True),
        ("gamma and beta read", 2 * vector, False),
        ("running mean and variance read and written", 4 * vector, False),
        ("saved mean and inverse standard deviation written", 2 * vector, False),
    ]
    backward = [
        ("x and dy read for the per-channel sums of dy and dy * x_hat", 2 * tensor, True),
        ("x and dy read again to form dx", 2 * tensor, True),
        ("dx written", tensor, True),
        ("saved mean, inverse standard deviation and gamma read", 3 * vector, False),
        ("dgamma and dbeta written", 2 * vector, False),
    ]

    def summary(items, tensors_if_cached):
        per_channel = sum(b for _, b, whole in items if not whole)
        return {"items": [{"what": what, "bytes": b} for what, b, _ in items], "floor": sum(b for _, b, _ in items),
                "if_cached": tensors_if_cached * tensor + per_channel}

    result = {"tensor_bytes": tensor, "forward": summary(forward, 2), "backward": summary(backward, 3)}
    result["forward"]["two_pass_statistics"] = result["forward"]["floor"] + tensor
    return result


# ---------------------------------------------------------------------------------------------
# Inputs, the float64 reference and the check
# ---------------------------------------------------------------------------------------------

def make_inputs(shape, dtype, device, seed) -> dict:
    """Random inputs (never zeros): x with a mean in [-2, 2] and a standard deviation in [0.5, 2] that
    differ per channel, gamma in [0.5, 1.5], beta in [-0.5, 0.5], running statistics that are not the
    defaults, and an upstream gradient dy ~ N(0, 1). x and dy in ``dtype``, the rest in float32."""
    generator = torch.Generator(device=device).manual_seed(seed)
    c = shape[1]

    def uniform(low, high, size):
        return low + (high - low) * torch.rand(size, generator=generator, device=device)

    per_channel = (1, c, 1, 1)
    x = torch.randn(shape, generator=generator, device=device) * uniform(0.5, 2.0, per_channel).view(per_channel)
    x = (x + uniform(-2.0, 2.0, per_channel).view(per_channel)).to(dtype)
    return {"x": x, "dy": torch.randn(shape, generator=generator, device=device).to(dtype),
            "gamma": uniform(0.5, 1.5, (c,)), "beta": uniform(-0.5, 0.5, (c,)),
            "running_mean": uniform(-0.5, 0.5, (c,)), "running_var": uniform(0.5, 1.5, (c,)), "seed": seed}


class _ErrorTally:
    """Normwise and elementwise errors of one output, accumulated chunk by chunk."""

    def __init__(self, scale=1.0):
        self.scale, self.squared_error, self.squared_ref = scale, 0.0, 0.0
        self.worst, self.worst_index, self.nonfinite, self.count = 0.0, None, 0, 0

    def add(self, out, ref, offset=()):
        out = out.to(torch.float64)
        finite = torch.isfinite(out)
        self.nonfinite += int((~finite).sum())
        error = torch.where(finite, (out - ref).abs(), torch.full_like(ref, math.inf))
        self.squared_error += float((torch.where(finite, error, 0.0) ** 2).sum())
        self.squared_ref += float((ref ** 2).sum())
        relative = error / (self.scale + ref.abs())
        index = int(relative.argmax())
        if self.worst_index is None or float(relative.flatten()[index]) > self.worst:
            self.worst = float(relative.flatten()[index])
            local = list(torch.unravel_index(torch.tensor(index), relative.shape))
            self.worst_index = [int(i) + (offset[k] if k < len(offset) else 0) for k, i in enumerate(local)]
        self.count += out.numel()

    def result(self, tolerance) -> dict:
        """The errors, None where an element was not finite (JSON has no infinity), and the verdict."""
        normwise = math.sqrt(self.squared_error / self.squared_ref) if self.squared_ref else math.inf
        passed = self.nonfinite == 0 and normwise <= tolerance["normwise"] and self.worst <= tolerance["elementwise"]
        finite = self.nonfinite == 0 and math.isfinite(normwise)
        return {"normwise": normwise if finite else None, "elementwise": self.worst if finite else None,
                "worst_index": self.worst_index, "nonfinite": self.nonfinite, "elements": self.count, "passed": passed}


def reference_errors(inputs, outputs, dtype_name, running=None, chunk_elements=2 ** 22) -> dict:
    """Compare ``outputs`` (y, dx, dgamma, dbeta) and, when given, the updated running statistics
    ``running`` (mean, var) with batch norm computed in float64 from the same inputs (x and dy as
    stored, upcast exactly), a few channels at a time so that the float64 copies stay small.
    The running variance uses the unbiased batch variance, PyTorch's convention."""
    with torch.no_grad():
        return _reference_errors(inputs, {name: out.detach() for name, out in outputs.items()}, dtype_name,
                                 None if running is None else [r.detach() for r in running], chunk_elements)


def _reference_errors(inputs, outputs, dtype_name, running, chunk_elements):
    x, dy, gamma, beta = inputs["x"], inputs["dy"], inputs["gamma"], inputs["beta"]
    n, c, h, w = x.shape
    m = n * h * w
    step = max(1, chunk_elements // m)
    tally = {"y": _ErrorTally(), "dx": _ErrorTally()}
    dgamma_ref, dbeta_ref, mean_ref, var_ref = [], [], [], []
    for c0 in range(0, c, step):
        part = slice(c0, min(c, c0 + step))
        xs, dys = x[:, part].to(torch.float64), dy[:, part].to(torch.float64)
        g = gamma[part].to(torch.float64).view(1, -1, 1, 1)
        b = beta[part].to(torch.float64).view(1, -1, 1, 1)
        mean = xs.mean(dim=(0, 2, 3), keepdim=True)
        var = ((xs - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        invstd = 1.0 / torch.sqrt(var + EPS)
        x_hat = (xs - mean) * invstd
        tally["y"].add(outputs["y"][:, part], g * x_hat + b, (0, c0))
        dbeta = dys.sum(dim=(0, 2, 3), keepdim=True)
        dgamma = (dys * x_hat).sum(dim=(0, 2, 3), keepdim=True)
        dx = g * invstd * (dys - dbeta / m - x_hat * dgamma / m)
        tally["dx"].add(outputs["dx"][:, part], dx, (0, c0))
        dgamma_ref.append(dgamma.flatten())
        dbeta_ref.append(dbeta.flatten())
        mean_ref.append(mean.flatten())
        var_ref.append(var.flatten())
    references = {"dgamma": torch.cat(dgamma_ref), "dbeta": torch.cat(dbeta_ref)}
    if running is not None:
        unbiased = torch.cat(var_ref) * m / max(m - 1, 1)
        references["running_mean"] = (1 - MOMENTUM) * inputs["running_mean"].to(torch.float64) + MOMENTUM * torch.cat(mean_ref)
        references["running_var"] = (1 - MOMENTUM) * inputs["running_var"].to(torch.float64) + MOMENTUM * unbiased
        outputs = {**outputs, "running_mean": running[0], "running_var": running[1]}
    for name, ref in references.items():
        scale = float(ref.pow(2).mean().sqrt()) if name in ("dgamma", "dbeta") else 1.0
        tally[name] = _ErrorTally(scale)
        tally[name].add(outputs[name], ref)
    return {name: t.result(TOLERANCES[dtype_name]) for name, t in tally.items()}


def _poison_freed_block(nbytes, device):
    """Fill a block of ``nbytes`` with NaN (all bits set) and free it, so that the next allocation of
    that size, which PyTorch's CUDA caching allocator serves from this block, starts as NaN. Returns
    the block's address, to see afterwards whether the output landed there."""
    block = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(255)
    address = block.data_ptr()
    del block
    return address


def check_implementation(make_runner, shape, dtype_name, device, seed) -> dict:
    """Run one implementation once on fresh random inputs and compare every output element with the
    float64 reference. Outputs that the runner writes into buffers it was given are filled with NaN
    first; outputs it allocates are poisoned through the allocator (a NaN-filled block of their size
    freed right before the call) and the record says whether the output landed in that block. An
    element never written stays NaN (or, where the allocator gave fresh memory, whatever was there)
    and fails the check either way."""
    inputs = make_inputs(shape, DTYPES[dtype_name], device, seed)
    runner = make_runner(inputs)
    nbytes = inputs["x"].numel() * inputs["x"].element_size()
    poisoned = {}
    for name, call in (("y", runner.forward), ("dx", runner.backward)):
        if runner.writes_into_given_buffers:
            runner.buffers[name].fill_(math.nan)
            address = None
        else:
            address = _poison_freed_block(nbytes, device)
        result = call()
        out = result if name == "y" else result[0]
        poisoned[name] = True if address is None else out.data_ptr() == address
        if name == "y":
            y = out
        else:
            dx, dgamma, dbeta = result
    if device.type == "cuda":
        torch.cuda.synchronize()
    errors = reference_errors(inputs, {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}, dtype_name,
                              runner.running)
    return {"shape": list(shape), "seed": seed, "passed": all(e["passed"] for e in errors.values()),
            "errors": errors, "output_memory_poisoned": poisoned,
            "checks_running_statistics": runner.running is not None,
            "autograd_node": type(y.grad_fn).__name__ if y.grad_fn is not None else None}


# ---------------------------------------------------------------------------------------------
# The implementations
# ---------------------------------------------------------------------------------------------

class Unavailable(Exception):
    """This implementation cannot run on this device or installation; the message says why."""


class AutogradRunner:
    """A batch norm written as a differentiable function: ``forward()`` runs the train-mode forward
    (recording the graph, as in training) and returns y; ``backward()`` returns (dx, dgamma, dbeta) of
    the last forward for the fixed upstream gradient, keeping the graph so that it can be timed again."""

    writes_into_given_buffers = False

    def __init__(self, function, inputs, memory_format=torch.contiguous_format, keeps_running=True):
        self.function = function
        self.x = inputs["x"].contiguous(memory_format=memory_format).requires_grad_()
        self.dy = inputs["dy"].contiguous(memory_format=memory_format)
        self.gamma = inputs["gamma"].clone().requires_grad_()
        self.beta = inputs["beta"].clone().requires_grad_()
        self.running = (inputs["running_mean"].clone(), inputs["running_var"].clone()) if keeps_running else None
        self.y = None

    def forward(self):
        self.y = None       # frees the previous graph first
        self.y = self.function(self.x, self.gamma, self.beta, self.running)
        return self.y

    def backward(self):
        return torch.autograd.grad(self.y, (self.x, self.gamma, self.beta), self.dy, retain_graph=True)


def _library(x, gamma, beta, running):
    return F.batch_norm(x, running[0], running[1], gamma, beta, training=True, momentum=MOMENTUM, eps=EPS)


def _handwritten_float32(x, gamma, beta, running=None):
    """The course's batch norm with its arithmetic in float32 whatever x's dtype, and y in x's dtype
    (as the library keeps statistics in float32 for bfloat16 tensors)."""
    return handwritten_batchnorm(x.float(), gamma, beta, EPS).to(x.dtype)


class TritonRunner:
    """The course's Triton kernels, called directly (no autograd), writing into buffers made once."""

    writes_into_given_buffers = True

    def __init__(self, module, inputs):
        self.module = module
        self.x, self.dy = inputs["x"].contiguous(), inputs["dy"].contiguous()
        self.gamma, self.beta = inputs["gamma"].clone(), inputs["beta"].clone()
        self.running = (inputs["running_mean"].clone(), inputs["running_var"].clone())
        self.buffers = {"y": torch.empty_like(self.x), "dx": torch.empty_like(self.x)}
        self.saved = None

    def forward(self):
        y, mean, invstd = self.module.forward(self.x, self.gamma, self.beta, self.running[0], self.running[1],
                                              momentum=MOMENTUM, eps=EPS, out=self.buffers["y"])
        self.saved = (mean, invstd)
        return y

    def backward(self):
        return self.module.backward(self.dy, self.x, self.gamma, *self.saved, out=self.buffers["dx"])


def triton_unavailable_reason(device):
    """Why the course's Triton kernels cannot run here, or None when they can."""
    if device.type != "cuda":
        return f"Triton kernels run on CUDA GPUs; this run is on the {device.type.upper()}"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    return None


def implementation_factories(device, compile_enabled) -> dict:
    """name -> a function of the inputs that returns a runner, or raises Unavailable (with the reason)."""
    factories = {
        "torch.nn.functional.batch_norm": lambda inputs: AutogradRunner(_library, inputs),
        "batch_norm, channels-last": lambda inputs: AutogradRunner(_library, inputs, torch.channels_last),
        "hand-written (composite ops)": lambda inputs: AutogradRunner(_handwritten_float32, inputs,
                                                                      keeps_running=False),
    }
    if compile_enabled:
        compiled = torch.compile(_handwritten_float32, dynamic=False)     # one static graph per shape and dtype
        factories["hand-written, torch.compile"] = lambda inputs: AutogradRunner(compiled, inputs, keeps_running=False)
    else:
        def no_compile(inputs):
            raise Unavailable("torch.compile is switched off in this size's settings (compile: false)")
        factories["hand-written, torch.compile"] = no_compile
    reason = triton_unavailable_reason(device)

    def triton_runner(inputs):
        if reason:
            raise Unavailable(reason)
        from bncourse.experiments import bn_triton

        return TritonRunner(bn_triton, inputs)

    factories["course Triton kernel"] = triton_runner
    return factories


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------

def copy_bandwidth(nbytes, device, repeats, warmup, inner) -> dict:
    """A device-to-device copy of ``nbytes``: bytes read plus bytes written over the median time."""
    source = torch.empty(nbytes, dtype=torch.uint8, device=device).random_(0, 256)
    target = torch.empty_like(source)
    def repeated():
        for _ in range(inner):
            target.copy_(source)

    timing = median_ms(repeated, device, repeats, warmup)
    ms = timing["median_ms"] / inner
    if not torch.equal(source, target):
        raise RuntimeError("the copy used to measure bandwidth did not copy")
    return {"buffer_bytes": nbytes, "bytes_moved": 2 * nbytes, "median_ms": ms, "min_ms": timing["min_ms"] / inner,
            "repeats": repeats, "inner": inner, "GB_per_s": 2 * nbytes / ms / 1e6}


def _saved_tensors(node) -> dict:
    saved = {}
    for attribute in sorted(dir(node)):
        if attribute.startswith("_saved_"):
            value = getattr(node, attribute)
            if isinstance(value, torch.Tensor):
                saved[attribute.removeprefix("_saved_")] = {"dtype": str(value.dtype).removeprefix("torch."),
                                                            "shape": list(value.shape)}
    return saved


def statistics_dtypes(device, channels=8) -> dict:
    """Where nn.BatchNorm2d keeps its statistics: for float32 and bfloat16 inputs, and for a float32
    input through conv -> BatchNorm2d under bfloat16 autocast; the autograd node's saved tensors
    (the batch mean and inverse standard deviation, or the backend's names for them)."""
    def describe(bn, x_in, y):
        return {"input": str(x_in.dtype).removeprefix("torch."), "output": str(y.dtype).removeprefix("torch."),
                "weight": str(bn.weight.dtype).removeprefix("torch."),
                "running_mean": str(bn.running_mean.dtype).removeprefix("torch."),
                "running_var": str(bn.running_var.dtype).removeprefix("torch."),
                "autograd_node": type(y.grad_fn).__name__, "saved": _saved_tensors(y.grad_fn)}

    torch.manual_seed(0)
    result = {}
    for name, dtype in DTYPES.items():
        bn = nn.BatchNorm2d(channels).to(device).train()
        x = torch.randn(4, channels, 6, 6, device=device).to(dtype).requires_grad_()
        result[f"{name} input"] = describe(bn, x, bn(x))
    conv = nn.Conv2d(3, channels, 3, padding=1, bias=False).to(device)
    bn = nn.BatchNorm2d(channels).to(device).train()
    x = torch.randn(4, 3, 6, 6, device=device)
    captured = {}
    bn.register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
    with torch.autocast(device.type, dtype=torch.bfloat16):
        y = bn(conv(x))
    result["bfloat16 autocast (float32 input, conv -> BatchNorm2d)"] = describe(bn, captured["x"], y)
    result["legend"] = ("saved: the tensors the autograd node keeps for the backward pass. native_batch_norm "
                        "(NativeBatchNormBackward0) saves result1 = the batch mean and result2 = the inverse "
                        "standard deviation; cudnn_batch_norm (CudnnBatchNormBackward0) saves result1 = the "
                        "mean, result2 = the inverse standard deviation and result3 = cuDNN's reserve space")
    return result


def device_properties(device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"multiprocessors": props.multi_processor_count, "memory_bytes": props.total_memory,
                "l2_cache_bytes": getattr(props, "L2_cache_size", None),
                "compute_capability": f"{props.major}.{props.minor}"}
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            caches[f"L{level} {kind.lower()}"] = (index / "size").read_text().strip()
        except OSError:
            continue
    return {"caches_reported_by_the_os": caches}


def _triton_version():
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def _load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def time_runner(runner, device, cfg) -> dict:
    inner = cfg["inner"]
    result = {}
    for name in PASSES:
        if name == "backward":
            runner.forward()                       # the graph that the timed backward passes differentiate
        call = runner.forward if name == "forward" else runner.backward
        def repeated(call=call):
            for _ in range(inner):
                call()

        timing = median_ms(repeated, device, cfg["repeats"], cfg["warmup"])
        result[name] = {"median_ms": timing["median_ms"] / inner, "min_ms": timing["min_ms"] / inner,
                        "repeats": cfg["repeats"], "inner": inner}
    return result


def run_all(size: str, device, show_progress=True, notes="") -> dict:
    cfg = SIZES[size]
    recorded_environment = {**environment(device), "triton": _triton_version(),
                            "device_properties": device_properties(device)}
    started, load_at_start = time.perf_counter(), _load_average()
    shape = cfg["shape"]
    copy_bytes = math.prod(shape) * 4                   # as large as the float32 tensor
    bar = progress_bar(2 + len(cfg["dtypes"]) * len(IMPLEMENTATIONS), show_progress)
    bar.set_description("copy bandwidth")
    copy = copy_bandwidth(copy_bytes, device, cfg["repeats"], cfg["warmup"], cfg["inner"])
    small_inner = max(cfg["inner"], 20) if device.type == "cuda" else cfg["inner"]
    small_copy = copy_bandwidth(cfg["cache_copy_bytes"], device, cfg["repeats"], cfg["warmup"], small_inner)
    bar.update()
    bar.set_description("statistics dtypes")
    dtypes_record = statistics_dtypes(device)
    bar.update()
    factories = implementation_factories(device, cfg["compile"])
    runs, seed = {}, 1000
    for dtype_name in cfg["dtypes"]:
        element_bytes = torch.empty((), dtype=DTYPES[dtype_name]).element_size()
        counted = minimum_bytes(shape, element_bytes)
        implementations = {}
        for name in IMPLEMENTATIONS:
            bar.set_description(f"{dtype_name}: {name}")
            record = {}
            try:
                checks = []
                for check_shape in [shape, *cfg["check_shapes"]]:
                    seed += 1                          # fresh inputs for every check
                    checks.append(check_implementation(factories[name], check_shape, dtype_name, device, seed))
                record["checks"] = checks
                if not all(check["passed"] for check in checks):
                    record["status"] = "failed check"
                else:
                    seed += 1
                    runner = factories[name](make_inputs(shape, DTYPES[dtype_name], device, seed))
                    timing = time_runner(runner, device, cfg)
                    del runner
                    for pass_name in PASSES:
                        floor = counted[pass_name]["floor"]
                        gb_per_s = floor / timing[pass_name]["median_ms"] / 1e6
                        timing[pass_name].update(GB_per_s=gb_per_s, fraction_of_copy=gb_per_s / copy["GB_per_s"])
                    record.update(status="timed", **timing)
            except Unavailable as reason:
                record = {"status": "skipped", "reason": str(reason)}
            except Exception as error:  # noqa: BLE001 - a compiler missing or failing, say: recorded, not fatal
                record.update(status="skipped", reason=f"{type(error).__name__}: {str(error)[:400]}")
            implementations[name] = record
            if device.type == "cuda":
                torch.cuda.empty_cache()
            bar.update()
        runs[dtype_name] = {"bytes": counted, "implementations": implementations}
    bar.close()
    return {"schema_version": SCHEMA_VERSION, "size": size, "environment": recorded_environment,
            "command": " ".join(["python -m bncourse.experiments.bn_bandwidth", *sys.argv[1:]]),
            "config": cfg, "eps": EPS, "momentum": MOMENTUM, "tolerances": TOLERANCES,
            "statistics_dtype": str(STATISTICS_DTYPE).removeprefix("torch."),
            "notes": notes, "seconds": round(time.perf_counter() - started, 1),
            "load_average": {"start": load_at_start, "end": _load_average(),
                             "what": "the host's 1, 5 and 15-minute load averages (runnable processes), "
                                     "at the start and at the end of the run"},
            "copy_bandwidth": copy, "cache_resident_copy": small_copy,
            "statistics_dtypes": dtypes_record, "runs": runs}


# ---------------------------------------------------------------------------------------------
# The file, and reading it
# ---------------------------------------------------------------------------------------------

def validate(result: dict) -> None:
    """Raise ValueError naming the first missing or malformed part of a result file."""
    def need(condition, what):
        if not condition:
            raise ValueError(f"bn_bandwidth result: {what}")

    need(isinstance(result, dict) and result.get("schema_version") == SCHEMA_VERSION,
         f"schema_version should be {SCHEMA_VERSION}")
    env = result.get("environment", {})
    for key in ("device", "device_type", "torch", "cuda", "cudnn", "triton", "date", "git_commit",
                "device_properties"):
        need(key in env, f"environment.{key} is missing")
    if env.get("device_type") == "cuda":
        need(env.get("cuda") and env.get("cudnn"), "a CUDA run must record its CUDA and cuDNN versions")
    need(isinstance(result.get("command"), str) and "bncourse.experiments.bn_bandwidth" in result["command"],
         "command is missing")
    need({"start", "end"} <= set(result.get("load_average", {})), "load_average is missing")
    config = result.get("config")
    need(isinstance(config, dict) and len(config.get("shape", [])) == 4 and config.get("dtypes"), "config is missing")
    for key in ("copy_bandwidth", "cache_resident_copy"):
        copy = result.get(key, {})
        need(copy.get("GB_per_s", 0) > 0 and copy.get("bytes_moved") == 2 * copy.get("buffer_bytes", -1),
             f"{key}: bytes moved (read + written) and a positive bandwidth")
    need(result["copy_bandwidth"]["buffer_bytes"] == math.prod(config["shape"]) * 4,
         "copy_bandwidth: the buffer should be as large as the float32 tensor")
    dtypes_record = result.get("statistics_dtypes", {})
    for name in [f"{d} input" for d in DTYPES] + ["bfloat16 autocast (float32 input, conv -> BatchNorm2d)"]:
        need(name in dtypes_record and {"running_mean", "running_var", "saved", "output"} <= set(dtypes_record[name]),
             f"statistics_dtypes: {name!r} is missing")
    runs = result.get("runs", {})
    need(list(runs) == config["dtypes"], "runs: one entry per configured dtype")
    for dtype_name, run in runs.items():
        element_bytes = torch.empty((), dtype=DTYPES[dtype_name]).element_size()
        need(run.get("bytes") == minimum_bytes(config["shape"], element_bytes),
             f"runs.{dtype_name}.bytes differ from minimum_bytes of the configured shape")
        implementations = run.get("implementations", {})
        need(list(implementations) == list(IMPLEMENTATIONS),
             f"runs.{dtype_name}: every implementation recorded (timed, failed or skipped), in order")
        for name, record in implementations.items():
            where = f"runs.{dtype_name}.{name}"
            status = record.get("status")
            need(status in ("timed", "failed check", "skipped"), f"{where}: unknown status {status!r}")
            if status == "skipped":
                need(isinstance(record.get("reason"), str) and record["reason"], f"{where}: skipped without a reason")
                continue
            checks = record.get("checks", [])
            need([c["shape"] for c in checks] == [config["shape"], *config["check_shapes"]],
                 f"{where}: checked on the timed shape and every check shape")
            need(all(c["passed"] for c in checks) == (status == "timed"),
                 f"{where}: timed only after every check passed")
            for check in checks:
                for output in ("y", "dx", "dgamma", "dbeta"):
                    need(output in check["errors"], f"{where}: check of {output} is missing")
            if status == "timed":
                for pass_name in PASSES:
                    timing = record.get(pass_name, {})
                    need(timing.get("median_ms", 0) > 0, f"{where}.{pass_name}: median_ms")
                    expected = run["bytes"][pass_name]["floor"] / timing["median_ms"] / 1e6
                    need(math.isclose(timing.get("GB_per_s", -1), expected, rel_tol=1e-9),
                         f"{where}.{pass_name}: GB_per_s is not the counted bytes over the median time")
                    need(math.isclose(timing.get("fraction_of_copy", -1),
                                      expected / result["copy_bandwidth"]["GB_per_s"], rel_tol=1e-9),
                         f"{where}.{pass_name}: fraction_of_copy is not GB_per_s over the copy bandwidth")


def write(result: dict, out) -> Path:
    validate(result)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bn_bandwidth_{result['size']}.json"
    path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    return path


def load_results(results_dir=None) -> dict:
    """The recorded runs, validated, by size (``"gpu"`` first, then ``"cpu"``, then any other), from
    ``results_dir`` (default: chapters/results/, or $BNCOURSE_RESULTS_DIR)."""
    folder = Path(results_dir) if results_dir else RESULTS_DIR
    found = {path.stem.removeprefix("bn_bandwidth_"): json.loads(path.read_text())
             for path in sorted(folder.glob("bn_bandwidth_*.json"))}
    order = ["gpu", "cpu"] + sorted(set(found) - {"gpu", "cpu"})
    results = {size: found[size] for size in order if size in found}
    for result in results.values():
        validate(result)
    return results


def bandwidth_table(result: dict) -> list[dict]:
    """One row per dtype and implementation: status, and per pass the median time (ms), the achieved
    bandwidth (counted bytes / median time, GB/s) and its fraction of the measured copy bandwidth;
    None where the implementation was skipped or failed its check, with the reason in ``note``."""
    rows = []
    for dtype_name, run in result["runs"].items():
        for name, record in run["implementations"].items():
            row = {"dtype": dtype_name, "implementation": name, "status": record["status"]}
            for pass_name in PASSES:
                timing = record.get(pass_name) if record["status"] == "timed" else None
                row[f"{pass_name}_ms"] = timing["median_ms"] if timing else None
                row[f"{pass_name}_GB_per_s"] = timing["GB_per_s"] if timing else None
                row[f"{pass_name}_fraction_of_copy"] = timing["fraction_of_copy"] if timing else None
            if record["status"] == "skipped":
                row["note"] = record["reason"]
            elif record["status"] == "failed check":
                failed = [f"{output} at {check['shape']}" for check in record["checks"]
                          for output, error in check["errors"].items() if not error["passed"]]
                row["note"] = "failed its check: " + ", ".join(failed)
            else:
                row["note"] = ""
            rows.append(row)
    return rows


def format_table(result: dict) -> str:
    """The table as text, at most 88 characters wide: the device, the tensor and the copy bandwidth,
    then per row ms, GB/s and the fraction of the copy bandwidth for forward and backward, then why
    the rows without numbers have none."""
    env = result["environment"]
    copy = result["copy_bandwidth"]
    lines = [f"{env['device']}"[:88],
             f"tensor {'x'.join(map(str, result['config']['shape']))}; measured copy bandwidth "
             f"{copy['GB_per_s']:,.0f} GB/s (read + written)",
             f"{'dtype':9s}{'implementation':32s}{'forward':>22s}{'backward':>22s}",
             f"{'':41s}{'ms   GB/s  copy':>22s}{'ms   GB/s  copy':>22s}"]
    for row in bandwidth_table(result):
        name = row["implementation"][:31]
        if row["status"] != "timed":
            lines.append(f"{row['dtype']:9s}{name:32s}  {row['status']}")
            continue
        cells = "".join(f"{row[f'{p}_ms']:>9.3f}{row[f'{p}_GB_per_s']:>7.0f}{row[f'{p}_fraction_of_copy']:>6.0%}"
                        for p in PASSES)
        lines.append(f"{row['dtype']:9s}{name:32s}{cells}")
    notes = [textwrap.fill(f"{row['dtype']}, {row['implementation']}: {row['note']}", 88, initial_indent="  ",
                           subsequent_indent="    ") for row in bandwidth_table(result) if row["note"]]
    return "\n".join(lines + (["not timed:"] + notes if notes else []))


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="default: gpu on CUDA, cpu otherwise")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="folder for the JSON file")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--notes", default="", help="recorded in the file: what else ran on the machine, say")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = args.size or ("gpu" if device.type == "cuda" else "cpu")
    result = run_all(size, device, show_progress=sys.stderr.isatty(), notes=args.notes)
    path = write(result, args.out)
    print(format_table(result))
    print(f"wrote {path} ({result['seconds']:.0f} s on {result['environment']['device']})")
    return path


if __name__ == "__main__":
    main()
