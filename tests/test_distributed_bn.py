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


def test_torch_sync_batchnorm_refuses_cpu_tensors_in_train_mode():
    results = distributed_bn.run_workers(distributed_bn.torch_sync_bn_worker, 2)
    for result in results:
        assert "expected input tensor to be on GPU" in result["train_error"]
        assert result["eval_runs"]
