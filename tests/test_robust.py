"""Intentional attention mask transformation under input noise (Fig. 8): sweep, selection, run."""
import json

import pytest
import torch

from hpnet.data import DataSpec, load_split
from hpnet.errors import HPNetError
from hpnet.model import HPNet, ModelConfig
from hpnet.commands import robust_run
from hpnet.evaluation import predict
from hpnet.ops.robust import RobustSettings, robustness_sweep, select_transform, sweep_accuracy
from hpnet.train import TrainConfig, fit

from test_pruning import NAMES, random_data, tiny


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((logits > 0).float() == targets).double().mean(0)


def test_identity_without_noise_equals_the_plain_accuracy_and_the_transform_is_restored():
    model, data = tiny(), random_data(20)
    n0, b0 = torch.tensor([1.0, 2.0, 1.0]), torch.tensor([0.0, 0.2, 0.1])
    model.set_transform(n0, b0)
    with_own = accuracy(predict(model, data), data.targets)
    result = robustness_sweep(model, data, ns=(1, 2), betas=(0, 0.5), noise_stds=(0, 0.3), batch_size=8)
    assert model.heads.transform_n.tolist() == n0.tolist()
    assert model.heads.transform_beta.tolist() == b0.tolist()
    assert with_own.tolist() == accuracy(predict(model, data), data.targets).tolist()
    model.set_transform(1.0, 0.0)
    plain = accuracy(predict(model, data), data.targets)
    first = result["results"][0]
    assert (first["n"], first["beta"], first["noise_std"]) == (1.0, 0.0, 0.0)
    assert first["accuracy"] == pytest.approx(float(plain.mean()))
    assert first["per_attribute"] == pytest.approx(plain.tolist())
    assert [(r["noise_std"], r["n"], r["beta"]) for r in result["results"]] == \
        [(s, n, b) for s in (0.0, 0.3) for n in (1.0, 2.0) for b in (0.0, 0.5)]
    assert result["images"] == 20 and result["attributes"] == NAMES


@pytest.mark.parametrize("clip", [False, True])
def test_noise_is_the_draw_predict_makes_and_is_shared_by_every_transform(clip):
    model, data = tiny(), random_data(20)
    acc = sweep_accuracy(model, data, [(1.0, 0.0), (2.0, 0.2), (1.0, 0.0)], [0.0, 0.4], clip=clip,
                         seed=3, batch_size=8)                        # (S, T, K)
    assert acc.shape == (2, 3, 3)
    assert torch.equal(acc[:, 0], acc[:, 2])                          # same noise for each (n, beta)
    if not clip:  # evaluation.predict draws the same noise (unclipped) from the same seed
        noisy = accuracy(predict(model, data, batch_size=8, noise_std=0.4, seed=3), data.targets)
        torch.testing.assert_close(acc[1, 0], noisy)
    model.set_transform(2.0, 0.2)
    assert acc[0, 1].tolist() == pytest.approx(accuracy(predict(model, data), data.targets).tolist())


def test_linear_heads_allow_only_the_identity():
    model, data = tiny("linear"), random_data(8)
    result = robustness_sweep(model, data, ns=(1,), betas=(0,), noise_stds=(0, 0.1))
    assert len(result["results"]) == 2
    with pytest.raises(HPNetError, match="attention heads"):
        robustness_sweep(model, data, ns=(1, 2), betas=(0,), noise_stds=(0,))


def test_select_transform_picks_per_attribute_parameters():
    model, valid, test = tiny(), random_data(24, seed=1), random_data(16, seed=2)
    chosen = select_transform(model, valid, test, noise_std=0.3, ns=(1, 2, 4), betas=(0, 0.5), batch_size=8)
    assert chosen["n"].shape == (3,) and chosen["beta"].shape == (3,)
    assert torch.equal(model.heads.transform_n, chosen["n"].float())
    assert torch.equal(model.heads.transform_beta, chosen["beta"].float())
    assert chosen["valid"]["accuracy_selected"] >= chosen["valid"]["accuracy_identity"]
    assert [c["name"] for c in chosen["chosen"]] == NAMES
    assert chosen["candidates"][0] == [1.0, 0.0] and len(chosen["candidates"]) == 6
    assert 0.0 <= chosen["test"]["accuracy_selected"] <= 1.0


def test_robust_run_writes_the_sweep_and_the_selection(tmp_path):
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES)
    torch.manual_seed(0)
    model = HPNet(ModelConfig(NAMES, widths=(4, 6, 6, 8)))
    cfg = TrainConfig(epochs=1, batch_size=32, amp=False, device="cpu", num_workers=0)
    fit(model, load_split(spec, "train", False), None, cfg, tmp_path, data_spec=spec, progress=False)
    result = robust_run(tmp_path, RobustSettings(ns=(1, 2), betas=(0, 0.2), noise_stds=(0, 0.5), select=True,
                                                 max_images=32), progress=False)
    stored = json.loads((tmp_path / "robustness.json").read_text())
    assert len(stored["results"]) == 8 and stored["split"] == "test" and stored["images"] == 32
    assert set(stored["results"][0]) >= {"n", "beta", "noise_std", "accuracy"}
    assert 0.0 < stored["majority_baseline"] <= 1.0
    selection = stored["selection"]
    assert len(selection["n"]) == 3 and selection["noise_std"] == 0.5
    assert selection["selection_split"] == "valid" and selection["test_split"] == "test"
    assert result.results[0]["accuracy"] == stored["results"][0]["accuracy"]
    assert result.to_json() == stored
