"""Synchronized batch norm in two real worker processes (torch.distributed, gloo, on the CPU) equals
single-process batch norm on the concatenated batch in float64, forward and backward, with unequal
counts per worker; per-worker batch norm does not. torch.nn.SyncBatchNorm refuses CPU tensors in train
mode, which is why the course has its own."""

from bncourse.experiments import distributed_bn


def test_synchronized_batch_norm_in_two_gloo_processes_matches_one_process():
    results = distributed_bn.run_workers(distributed_bn.agreement_worker, 2, [5, 11])
    assert [r["count"] for r in results] == [5, 11]
    for result in results:
        for key in ("sync_output", "sync_dx", "sync_dgamma_dbeta", "sync_running_stats"):
            assert result[key] < 1e-12, (result["rank"], key, result[key])
        assert result["per_worker_output"] > 0.1   # each shard's own statistics give other numbers
        assert result["ddp_mean_losses"] > 0.05    # DDP's average of the shards' mean losses, unequal shards


def test_torch_sync_batchnorm_refuses_cpu_tensors_in_train_mode():
    results = distributed_bn.run_workers(distributed_bn.torch_sync_bn_worker, 2)
    for result in results:
        assert "expected input tensor to be on GPU" in result["train_error"]
        assert result["eval_runs"]


# Starting and stopping workers: no port to race for, no worker left behind, the parent's environment untouched.

def _fail_on_rank_0(rank, world_size, folder):
    import os
    import pathlib

    import torch.distributed as dist
    pathlib.Path(folder, f"pid{rank}").write_text(str(os.getpid()))
    if rank == 0:
        raise ValueError("rank 0 gives up")
    dist.barrier()            # waits for rank 0, which never comes


def _sleep(rank, world_size, folder):
    import os
    import pathlib
    import time
    pathlib.Path(folder, f"pid{rank}").write_text(str(os.getpid()))
    time.sleep(120)


def _gone(folder, world_size):
    import os
    for rank in range(world_size):
        pid = int((folder / f"pid{rank}").read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def test_a_failing_worker_stops_the_others_and_says_so(tmp_path):
    import time

    import pytest
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"worker process \d failed, and the other workers were terminated"):
        distributed_bn.run_workers(_fail_on_rank_0, 2, str(tmp_path))
    assert time.monotonic() - started < 45          # not gloo's 30-minute default, nor the 60 s timeout
    assert _gone(tmp_path, 2)


def test_workers_that_run_too_long_are_terminated(tmp_path):
    import pytest
    with pytest.raises(TimeoutError, match="were terminated"):
        distributed_bn.run_workers(_sleep, 2, str(tmp_path), timeout=5)
    assert _gone(tmp_path, 2)


def test_the_thread_setting_stays_in_the_workers(monkeypatch):
    import os
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    distributed_bn.run_workers(distributed_bn.torch_sync_bn_worker, 2)
    assert "OMP_NUM_THREADS" not in os.environ
