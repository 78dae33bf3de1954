"""Batch norm against the memory floor (bn_bandwidth): the byte counts against hand arithmetic, the
correctness check against wrong implementations, the script end to end at its tiny size on the CPU,
the JSON validator and readers on that run and on a made-up CUDA run, the committed results, the GPU
script, and the course's Triton kernels where Triton is installed (through its interpreter, and
compiled for an H100/H200 without one)."""

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from bncourse import reference
from bncourse.experiments import bn_bandwidth as bw

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Bytes
# ---------------------------------------------------------------------------------------------

def test_minimum_bytes_against_a_hand_count():
    # (2, 3, 4, 5): 120 elements; float32: 480 bytes per tensor; 3 channels: 12 bytes per float32 vector.
    counted = bw.minimum_bytes((2, 3, 4, 5), 4)
    assert counted["tensor_bytes"] == 480
    # forward: x read twice, y written (3 x 480), gamma, beta (2 x 12), running mean and var read and
    # written (4 x 12), saved mean and invstd written (2 x 12)
    assert counted["forward"]["floor"] == 1440 + 24 + 48 + 24 == 1536
    assert counted["forward"]["if_cached"] == 960 + 96
    assert counted["forward"]["two_pass_statistics"] == 1536 + 480
    # backward: x and dy read twice (4 x 480), dx written (480), mean, invstd, gamma read (3 x 12),
    # dgamma and dbeta written (2 x 12)
    assert counted["backward"]["floor"] == 1920 + 480 + 36 + 24 == 2460
    assert counted["backward"]["if_cached"] == 3 * 480 + 60
    assert sum(item["bytes"] for item in counted["backward"]["items"]) == 2460
    bf16 = bw.minimum_bytes((2, 3, 4, 5), 2)   # bfloat16 tensors, float32 per-channel vectors
    assert (bf16["forward"]["floor"], bf16["backward"]["floor"]) == (720 + 96, 1200 + 60)
    # the GPU size: 256 * 256 * 56 * 56 = 205,520,896 float32 elements, 822,083,584 bytes
    gpu = bw.minimum_bytes((256, 256, 56, 56), 4)
    assert gpu["forward"]["floor"] == 3 * 822_083_584 + 8 * 256 * 4 == 2_466_258_944


# ---------------------------------------------------------------------------------------------
# The check against float64
# ---------------------------------------------------------------------------------------------

def test_the_float64_reference_agrees_with_the_course_reference():
    """The check's float64 batch norm, fed outputs of bncourse.reference (NumPy, float64), finds them
    exact; nudged by 1e-3, it finds them wrong."""
    inputs = bw.make_inputs((3, 4, 5, 6), torch.float32, CPU, seed=7)
    x, dy = inputs["x"].double().numpy(), inputs["dy"].double().numpy()
    gamma, beta = inputs["gamma"].double().numpy(), inputs["beta"].double().numpy()
    bn_param = {"running_mean": inputs["running_mean"].double().numpy(),
                "running_var": inputs["running_var"].double().numpy(), "momentum": bw.MOMENTUM, "eps": bw.EPS}
    y, cache = reference.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = reference.spatial_batchnorm_backward(dy, cache)
    outputs = {"y": torch.from_numpy(y), "dx": torch.from_numpy(dx), "dgamma": torch.from_numpy(dgamma),
               "dbeta": torch.from_numpy(dbeta)}
    running = (torch.from_numpy(bn_param["running_mean"]), torch.from_numpy(bn_param["running_var"]))
    errors = bw.reference_errors(inputs, outputs, "float32", running)
    assert set(errors) == {"y", "dx", "dgamma", "dbeta", "running_mean", "running_var"}
    assert all(e["passed"] and e["normwise"] < 1e-12 for e in errors.values()), errors
    nudged = {**outputs, "dx": outputs["dx"] * (1 + 1e-3)}
    assert not bw.reference_errors(inputs, nudged, "float32", running)["dx"]["passed"]


class _Wrong(torch.autograd.Function):
    """Batch norm whose backward leaves out the paths through the mean and the variance."""

    @staticmethod
    def forward(ctx, x, gamma, beta):
        mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), keepdim=True, unbiased=False)
        invstd = 1 / torch.sqrt(var + bw.EPS)
        ctx.save_for_backward(x, gamma, mean, invstd)
        return gamma.view(1, -1, 1, 1) * (x - mean) * invstd + beta.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, dy):
        x, gamma, mean, invstd = ctx.saved_tensors
        x_hat = (x - mean) * invstd
        return dy * gamma.view(1, -1, 1, 1) * invstd, (dy * x_hat).sum((0, 2, 3)), dy.sum((0, 2, 3))


def _unbiased_variance(x, gamma, beta, running):
    var = x.var((0, 2, 3), keepdim=True, unbiased=True)
    x_hat = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(var + bw.EPS)
    return gamma.view(1, -1, 1, 1) * x_hat + beta.view(1, -1, 1, 1)


def _per_image_statistics(x, gamma, beta, running):   # instance norm: statistics over (H, W) only
    return F.instance_norm(x.float(), weight=gamma, bias=beta, eps=bw.EPS).to(x.dtype)


def _library_with(transform):
    """F.batch_norm, then its running statistics replaced by transform(running before, batch mean,
    batch variance): a wrong update of the running statistics."""
    def function(x, gamma, beta, running):
        before = [r.clone() for r in running]
        y = F.batch_norm(x, *[r.clone() for r in running], gamma, beta, training=True, momentum=bw.MOMENTUM,
                         eps=bw.EPS)
        with torch.no_grad():
            dims = (0, 2, 3)
            mean, var = x.float().mean(dims), x.float().var(dims, unbiased=False)
            for r, new in zip(running, transform(before, mean, var)):
                r.copy_(new)
        return y
    return function


class _SkipsTheLastElement(bw.TritonRunner):
    """Writes y into the given buffer like the Triton runner, but never its last element."""

    def __init__(self, inputs):
        super().__init__(None, inputs)

    def forward(self):
        y = F.batch_norm(self.x, *self.running, self.gamma, self.beta, training=True, momentum=bw.MOMENTUM,
                         eps=bw.EPS)
        self.buffers["y"].view(-1)[:-1] = y.view(-1)[:-1]
        return self.buffers["y"]

    def backward(self):
        x = self.x.detach().requires_grad_()
        gamma, beta = self.gamma.clone().requires_grad_(), self.beta.clone().requires_grad_()
        y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=bw.EPS)
        return torch.autograd.grad(y, (x, gamma, beta), self.dy)


WRONG = {   # name -> (runner factory, dtype, the outputs whose check must fail)
    "unbiased variance in the normalization": (
        lambda inputs: bw.AutogradRunner(_unbiased_variance, inputs, keeps_running=False), "float32",
        {"y", "dx", "dgamma"}),
    "statistics per image (instance norm)": (
        lambda inputs: bw.AutogradRunner(_per_image_statistics, inputs, keeps_running=False), "bfloat16",
        {"y", "dx", "dgamma"}),
    "backward without the mean and variance paths": (
        lambda inputs: bw.AutogradRunner(lambda x, g, b, r: _Wrong.apply(x, g, b), inputs, keeps_running=False),
        "float32", {"dx"}),
    "running variance biased": (
        lambda inputs: bw.AutogradRunner(_library_with(lambda before, mean, var: (
            0.9 * before[0] + 0.1 * mean, 0.9 * before[1] + 0.1 * var)), inputs), "float32", {"running_var"}),
    "Keras' momentum convention": (
        lambda inputs: bw.AutogradRunner(_library_with(lambda before, mean, var: (
            0.1 * before[0] + 0.9 * mean, 0.1 * before[1] + 0.9 * var * 90 / 89)), inputs), "float32",
        {"running_mean", "running_var"}),
    "last element never written": (_SkipsTheLastElement, "bfloat16", {"y"}),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_the_check_catches_a_wrong_implementation(name):
    factory, dtype_name, wrong_outputs = WRONG[name]
    shape = (3, 2, 5, 6)       # 90 values per channel (the Keras case's 90 / 89 is the unbiased factor)
    check = bw.check_implementation(factory, shape, dtype_name, CPU, seed=11)
    failed = {output for output, error in check["errors"].items() if not error["passed"]}
    assert not check["passed"] and failed == wrong_outputs, check["errors"]
    if name == "last element never written":
        assert check["output_memory_poisoned"]["y"] is True
        assert check["errors"]["y"]["nonfinite"] == 1 and check["errors"]["y"]["worst_index"] == [2, 1, 4, 5]


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_the_check_passes_the_library_with_fresh_inputs(dtype_name):
    factory = bw.implementation_factories(CPU, compile_enabled=False)["torch.nn.functional.batch_norm"]
    first = bw.check_implementation(factory, (3, 2, 5, 6), dtype_name, CPU, seed=1)
    second = bw.check_implementation(factory, (3, 2, 5, 6), dtype_name, CPU, seed=2)
    assert first["passed"] and second["passed"] and first["checks_running_statistics"]
    assert first["errors"]["y"]["normwise"] != second["errors"]["y"]["normwise"]   # other inputs
    inputs = bw.make_inputs((3, 2, 5, 6), bw.DTYPES[dtype_name], CPU, seed=1)
    assert inputs["x"].dtype == bw.DTYPES[dtype_name] and inputs["gamma"].dtype == torch.float32
    assert (inputs["x"] != 0).all() and inputs["x"].float().std() > 0.3


# ---------------------------------------------------------------------------------------------
# The tiny run, the file, the readers
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bandwidth")
    completed = subprocess.run([sys.executable, "-m", "bncourse.experiments.bn_bandwidth", "--size", "tiny",
                                "--device", "cpu", "--out", str(out), "--notes", "made by the test suite"],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    path = out / "bn_bandwidth_tiny.json"
    assert str(path) in completed.stdout and "torch.nn.functional.batch_norm" in completed.stdout
    return json.loads(path.read_text())


def test_tiny_run_records_provenance_checks_and_every_implementation(tiny_result):
    bw.validate(tiny_result)
    env = tiny_result["environment"]
    assert env["device_type"] == "cpu" and env["torch"] == torch.__version__ and env["cuda"] is None
    assert "--size tiny" in tiny_result["command"] and tiny_result["notes"] == "made by the test suite"
    assert tiny_result["config"] == bw.SIZES["tiny"]
    for dtype_name, run in tiny_result["runs"].items():
        records = run["implementations"]
        assert list(records) == list(bw.IMPLEMENTATIONS)
        for name in ("torch.nn.functional.batch_norm", "batch_norm, channels-last", "hand-written (composite ops)"):
            assert records[name]["status"] == "timed", records[name]
            assert all(check["passed"] for check in records[name]["checks"])
        assert records["hand-written, torch.compile"] == {
            "status": "skipped", "reason": "torch.compile is switched off in this size's settings (compile: false)"}
        assert records["course Triton kernel"] == {
            "status": "skipped", "reason": "Triton kernels run on CUDA GPUs; this run is on the CPU"}
        timing = records["torch.nn.functional.batch_norm"]["forward"]
        assert timing["GB_per_s"] == pytest.approx(run["bytes"]["forward"]["floor"] / timing["median_ms"] / 1e6)


def test_statistics_are_kept_in_float32_for_bfloat16_on_the_cpu(tiny_result):
    record = tiny_result["statistics_dtypes"]
    for name in ("bfloat16 input", "bfloat16 autocast (float32 input, conv -> BatchNorm2d)"):
        assert record[name]["input"] == record[name]["output"] == "bfloat16"
        assert record[name]["running_mean"] == record[name]["running_var"] == "float32"
        assert record[name]["autograd_node"] == "NativeBatchNormBackward0"
        assert record[name]["saved"]["result1"] == {"dtype": "float32", "shape": [8]}    # the batch mean
        assert record[name]["saved"]["result2"] == {"dtype": "float32", "shape": [8]}    # 1 / std


def test_validate_names_what_is_wrong(tiny_result):
    broken = copy.deepcopy(tiny_result)
    del broken["runs"]["bfloat16"]["implementations"]["course Triton kernel"]
    with pytest.raises(ValueError, match="every implementation recorded"):
        bw.validate(broken)
    broken = copy.deepcopy(tiny_result)
    broken["runs"]["float32"]["implementations"]["torch.nn.functional.batch_norm"]["checks"][0]["passed"] = False
    with pytest.raises(ValueError, match="timed only after every check passed"):
        bw.validate(broken)
    broken = copy.deepcopy(tiny_result)
    broken["runs"]["float32"]["implementations"]["hand-written (composite ops)"]["backward"]["GB_per_s"] *= 2
    with pytest.raises(ValueError, match="GB_per_s is not the counted bytes"):
        bw.validate(broken)
    broken = copy.deepcopy(tiny_result)
    broken["runs"]["float32"]["implementations"]["course Triton kernel"] = {"status": "skipped"}
    with pytest.raises(ValueError, match="skipped without a reason"):
        bw.validate(broken)
    broken = copy.deepcopy(tiny_result)
    broken["environment"].update(device_type="cuda", cuda=None)
    with pytest.raises(ValueError, match="CUDA and cuDNN versions"):
        bw.validate(broken)


def made_up_cuda_run(tiny_result):
    """The tiny CPU result relabelled as a CUDA run, with the course's kernel timed (made-up times), the
    compiled one skipped and channels-last failing its check in bfloat16: what readers must handle."""
    result = copy.deepcopy(tiny_result)
    result["size"] = "gpu"
    result["environment"].update(device="NVIDIA test device (labels made up by this test)", device_type="cuda",
                                 cuda="13.0", cudnn=91002, triton="3.6.0")
    copy_gbs = result["copy_bandwidth"]["GB_per_s"]
    for dtype_name, run in result["runs"].items():
        records = run["implementations"]
        triton_record = copy.deepcopy(records["torch.nn.functional.batch_norm"])
        for pass_name, ms in (("forward", 0.5), ("backward", 0.9)):
            gbs = run["bytes"][pass_name]["floor"] / ms / 1e6
            triton_record[pass_name].update(median_ms=ms, GB_per_s=gbs, fraction_of_copy=gbs / copy_gbs)
        records["course Triton kernel"] = triton_record
        records["hand-written, torch.compile"] = {"status": "skipped", "reason": "RuntimeError: made up by the test"}
    failing = result["runs"]["bfloat16"]["implementations"]["batch_norm, channels-last"]
    failing["checks"][1]["passed"] = False
    failing["checks"][1]["errors"]["dx"]["passed"] = False
    for pass_name in bw.PASSES:
        failing.pop(pass_name)
    failing["status"] = "failed check"
    return result


def test_readers_on_the_cpu_run_and_a_made_up_cuda_run(tiny_result, tmp_path):
    cuda = made_up_cuda_run(tiny_result)
    bw.write(cuda, tmp_path)
    cpu = copy.deepcopy(tiny_result)
    cpu["size"] = "cpu"
    bw.write(cpu, tmp_path)
    results = bw.load_results(tmp_path)
    assert list(results) == ["gpu", "cpu"]           # the GPU run first
    rows = bw.bandwidth_table(results["gpu"])
    assert len(rows) == len(cuda["config"]["dtypes"]) * len(bw.IMPLEMENTATIONS)
    by_key = {(row["dtype"], row["implementation"]): row for row in rows}
    kernel = by_key[("float32", "course Triton kernel")]
    assert kernel["status"] == "timed" and kernel["forward_ms"] == 0.5 and kernel["note"] == ""
    floor = cuda["runs"]["float32"]["bytes"]["forward"]["floor"]
    assert kernel["forward_GB_per_s"] == pytest.approx(floor / 0.5 / 1e6)
    assert kernel["forward_fraction_of_copy"] == pytest.approx(floor / 0.5 / 1e6 / cuda["copy_bandwidth"]["GB_per_s"])
    skipped = by_key[("bfloat16", "hand-written, torch.compile")]
    assert skipped["status"] == "skipped" and skipped["forward_ms"] is None
    assert skipped["note"] == "RuntimeError: made up by the test"
    failed = by_key[("bfloat16", "batch_norm, channels-last")]
    assert failed["status"] == "failed check" and failed["backward_GB_per_s"] is None
    assert failed["note"] == "failed its check: dx at [3, 2, 3, 5]"
    text = bw.format_table(results["gpu"])
    assert text.startswith("NVIDIA test device (labels made up by this test)\ntensor 4x3x5x7; measured copy")
    assert "skipped" in text and "failed check" in text and "RuntimeError: made up by the test" in text
    assert max(len(line) for line in text.splitlines()) <= 88
    with pytest.raises(ValueError, match="bn_bandwidth result"):
        broken = copy.deepcopy(cuda)
        broken["environment"].pop("triton")
        (tmp_path / "bn_bandwidth_gpu.json").write_text(json.dumps(broken))
        bw.load_results(tmp_path)


# ---------------------------------------------------------------------------------------------
# The committed results
# ---------------------------------------------------------------------------------------------

def test_the_cpu_run_is_committed():
    assert (REPO / "chapters" / "results" / "bn_bandwidth_cpu.json").is_file()


@pytest.mark.parametrize("path", sorted((REPO / "chapters" / "results").glob("bn_bandwidth_*.json")),
                         ids=lambda p: p.name)
def test_committed_results_are_complete(path):
    result = json.loads(path.read_text())
    bw.validate(result)
    assert path.name == f"bn_bandwidth_{result['size']}.json"
    assert result["environment"]["git_commit"] != "unknown" and result["config"] == bw.SIZES[result["size"]]
    timed = [row for row in bw.bandwidth_table(result) if row["status"] == "timed"]
    assert {row["implementation"] for row in timed} >= {"torch.nn.functional.batch_norm"}
    if result["environment"]["device_type"] == "cuda":    # the course's kernel compiled, passed and was timed
        assert result["environment"]["triton"], "the GPU run should have had Triton"
        for dtype, run in result["runs"].items():
            kernel = run["implementations"]["course Triton kernel"]
            assert kernel["status"] == "timed", (dtype, kernel.get("reason"))


# ---------------------------------------------------------------------------------------------
# The GPU script, at the tiny size on the CPU
# ---------------------------------------------------------------------------------------------

def test_the_gpu_script_runs_both_experiments_and_summarizes(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "SIZE": "tiny", "PYTHON": sys.executable}
    completed = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh")], capture_output=True, text=True,
                               timeout=600, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    out = completed.stdout
    assert "bn_bandwidth: exit status 0" in out and "bn_training: exit status 0" in out
    assert "sklearn: present" in out and "torch.nn.functional.batch_norm" in out and "nn.BatchNorm2d: forward" in out
    from bncourse.experiments import bn_training

    bw.validate(json.loads((tmp_path / "bn_bandwidth_tiny.json").read_text()))
    bn_training.validate(json.loads((tmp_path / "bn_training_tiny.json").read_text()))
    assert (tmp_path / "bn_bandwidth.log").is_file() and (tmp_path / "bn_training.log").is_file()


def test_the_gpu_script_refuses_the_gpu_size_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = {**os.environ, "OUT": str(tmp_path), "SIZE": "gpu", "PYTHON": sys.executable}
    completed = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh")], capture_output=True, text=True,
                               timeout=120, env=env)
    assert completed.returncode == 1 and "SIZE=gpu needs CUDA" in completed.stderr
    assert not list(tmp_path.glob("*.json"))


# ---------------------------------------------------------------------------------------------
# The course's Triton kernels
# ---------------------------------------------------------------------------------------------

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="triton is not installed here (torch's CPU build does not bring it): the course's Triton kernels are "
           "checked by the GPU run itself before they are timed, and here only where Triton is installed")

INTERPRETED_CHECK = textwrap.dedent("""
    import json, sys
    import torch
    import triton, triton.language as tl

    @triton.jit
    def probe(x_ptr, n, BLOCK: tl.constexpr):
        for i in range(0, n, BLOCK):
            tl.store(x_ptr + i + tl.arange(0, BLOCK), tl.zeros((BLOCK,), tl.float32))

    try:
        probe[(1,)](torch.ones(8), 8, BLOCK=4)
    except Exception as error:
        print(json.dumps({"interpreter": f"{type(error).__name__}: {error}"}))
        sys.exit(0)

    from bncourse.experiments import bn_bandwidth as bw, bn_triton
    cpu = torch.device("cpu")
    factory = lambda inputs: bw.TritonRunner(bn_triton, inputs)
    results, seed = {}, 0
    for dtype_name in ("float32", "bfloat16"):
        for shape in ((3, 5, 7, 11), (2, 3, 4, 5), (70, 2, 3, 3), (2, 3, 70, 70), (16, 3, 8, 8), (1, 3, 1, 3)):
            seed += 1
            check = bw.check_implementation(factory, shape, dtype_name, cpu, seed)
            results[f"{dtype_name} {shape}"] = check["passed"]
    # the timing path of the GPU run, once
    runner = factory(bw.make_inputs((2, 3, 8, 8), torch.float32, cpu, 97))
    timed = bw.time_runner(runner, cpu, {"repeats": 1, "warmup": 0, "inner": 2})
    assert set(timed) == {"forward", "backward"} and timed["backward"]["median_ms"] > 0
    # wrong launches of the same kernels: the last slice of each channel's rows left out of the
    # reductions, and the last block of every row (70 x 70 = 4,900 elements: 4,096 + 804) never written
    real = bn_triton._launch_shape
    bn_triton._launch_shape = lambda x: {**real(x), "slices": real(x)["slices"] - 1}
    wrong_slices = bw.check_implementation(factory, (70, 2, 3, 3), "float32", cpu, 99)
    bn_triton._launch_shape = lambda x: {**real(x), "row_blocks": real(x)["row_blocks"] - 1}
    wrong_tail = bw.check_implementation(factory, (2, 3, 70, 70), "bfloat16", cpu, 98)
    print(json.dumps({"checks": results,
                      "wrong_slices": sorted(k for k, e in wrong_slices["errors"].items() if not e["passed"]),
                      "wrong_tail": sorted(k for k, e in wrong_tail["errors"].items() if not e["passed"]),
                      "tail_nonfinite": wrong_tail["errors"]["y"]["nonfinite"]}))
""")


@needs_triton
def test_the_triton_kernels_pass_the_check_in_triton_s_interpreter():
    completed = subprocess.run([sys.executable, "-c", INTERPRETED_CHECK], capture_output=True, text=True,
                               timeout=600, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    if "interpreter" in report:
        pytest.skip(f"this Triton's interpreter cannot run a loop here: {report['interpreter']}")
    assert all(report["checks"].values()), report["checks"]
    assert report["wrong_slices"] == ["dbeta", "dgamma", "dx", "running_mean", "running_var", "y"]
    assert report["wrong_tail"] == ["dx", "y"]
    assert report["tail_nonfinite"] == 2 * 3 * (4900 - 4096)


@needs_triton
def test_the_triton_kernels_compile_for_hopper():
    """Each kernel through Triton's real compiler to machine code for sm_90 (H100/H200), no GPU needed:
    the checks the interpreter does not make (types, loop-carried values); and, as the cuobjdump that
    comes with Triton reads the machine code, no registers spilled to local memory and 16-byte loads
    in the kernels that stream the tensor."""
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json, os, re, subprocess, tempfile
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import ASTSource
        from bncourse.experiments import bn_triton as bt

        report = {}
        for dtype in ("fp32", "bf16"):
            for kernel, constants in ((bt._forward_partials, {"BLOCK_N": 64, "BLOCK_HW": 64}),
                                      (bt._forward_finish, {"HAS_RUNNING": True, "BLOCK_S": 8}),
                                      (bt._normalize, {"BLOCK": 4096}),
                                      (bt._backward_partials, {"BLOCK_N": 64, "BLOCK_HW": 64}),
                                      (bt._backward_finish, {"BLOCK_S": 8}),
                                      (bt._backward_elementwise, {"BLOCK": 4096})):
                signature = {}
                for name in kernel.arg_names:
                    if name in constants:
                        signature[name] = "constexpr"
                    elif name.endswith("_ptr"):
                        signature[name] = f"*{dtype}" if name in ("x_ptr", "y_ptr", "dy_ptr", "dx_ptr") else "*fp32"
                    else:
                        signature[name] = "fp32" if name in ("eps", "momentum", "count") else "i32"
                # what Triton's launcher assumes at the GPU size: 16-byte aligned tensors, and C = 256,
                # H*W = 3,136, N = 256 and 64 rows per slice multiples of 16 (SLICES = 4 is not)
                divisible = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
                             if signature[name][0] == "*" or name in ("C", "HW", "N", "rows_per_slice")}
                compiled = triton.compile(ASTSource(kernel, signature, constants, divisible),
                                          target=GPUTarget("cuda", 90, 32), options={"num_warps": bt.WARPS})
                # registers and local memory (spills) as cuobjdump, shipped with Triton, reads them
                cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
                with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
                    cubin.write(compiled.asm["cubin"])
                    cubin.flush()
                    usage, sass = (subprocess.run([cuobjdump, option, cubin.name], capture_output=True, text=True,
                                                  check=True).stdout
                                   for option in ("--dump-resource-usage", "--dump-sass"))
                registers, local = re.search(r"REG:(\\d+) .*LOCAL:(\\d+)", usage).groups()
                report[f"{dtype} {kernel.__name__}"] = {"registers": int(registers), "local_bytes": int(local),
                                                        "wide_loads": sass.count("LDG.E.128")}
        print(json.dumps(report))
    """)], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(report) == 12 and all(0 < k["registers"] <= 128 and k["local_bytes"] == 0 for k in report.values()), report
    streaming = [key for key in report if "finish" not in key]    # the kernels that read the whole tensor
    assert all(report[key]["wide_loads"] > 0 for key in streaming), report   # 16-byte loads


def test_the_commit_is_taken_from_the_environment_without_git(tmp_path, monkeypatch):
    from bncourse.experiments import common

    monkeypatch.setattr(common, "REPO", tmp_path)          # a copy of the working tree, no .git
    monkeypatch.delenv("BNCOURSE_GIT_COMMIT", raising=False)
    assert common.git_commit() == "unknown"
    monkeypatch.setenv("BNCOURSE_GIT_COMMIT", "0123abc")
    assert common.git_commit() == "0123abc (from BNCOURSE_GIT_COMMIT: copy of the working tree without .git)"
    monkeypatch.setattr(common, "REPO", REPO)             # the repository: git answers, the variable is ignored
    assert common.git_commit().split("+")[0] == subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
