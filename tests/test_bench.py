"""The benchmark runs end to end (tiny config) and ends with one JSON object with the agreed keys."""
import json
import subprocess
import sys

from hpnet.model import HEADS

KEYS = {"train_speedup", "infer_speedup", "peak_memory_ratio", "flop_limit_fraction",
        "pruned50_infer_speedup", "data_fraction", "device", "train_batch", "infer_batch",
        "memory_batch", "matmul_gflops", "flops_per_image", "flop_limit_images_per_s"}


def test_quick_bench_prints_json_last():
    proc = subprocess.run([sys.executable, "-m", "hpnet.bench", "--quick", "--device", "cpu"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    for impl in ("naive", "fused"):
        assert result[impl]["train_images_per_s"] > 0 and result[impl]["infer_images_per_s"] > 0
        assert result[impl]["train_step_peak_memory_mb"] > 0
    assert result["pruned50"]["channels"] == result["config"]["channels"] // 2
    assert sorted(result["heads"]) == sorted(HEADS.names())             # every head family, side by side
    assert result["heads"]["attention"]["train_vs_attention"] == 1.0
    for head, h in result["heads"].items():
        assert h["train_images_per_s"] > 0 and h["train_vs_attention"] > 0 and h["infer_vs_attention"] > 0
        assert 0 < h["train_flop_limit_fraction"] and 0 < h["infer_flop_limit_fraction"], head
        assert f"{head} heads: train" in proc.stderr
    resnet = result["backbones"]["resnet18"]                             # the residual backbone, side by side
    assert resnet["train_images_per_s"] > 0 and resnet["infer_vs_paper"] > 0 and resnet["channels"] == 8
    assert "backbone resnet18" in proc.stderr
    assert result["matmul_gflops"] == max(result["matmul_gflops_samples"])
    serve = result["serve_apply"]                                       # the page's latency
    assert serve["images"] == 256 and 0 < serve["median_ms"] <= serve["p95_ms"] <= serve["max_ms"]
    assert "hpnet serve: apply and measure" in proc.stderr
    score = result["serve_score"]                                       # the score of a trial log
    assert score["trials"] == 200 and score["pairs"] == 800 and 0 < score["parse_s"] < score["score_s"]
    assert "hpnet serve: score of 200 trials" in proc.stderr
    assert "naive" in proc.stderr and "fused" in proc.stderr  # the table
