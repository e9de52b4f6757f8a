import pytest
import torch

from betasched.analysis.stats import mcnemar_exact
from betasched.core.controls import build_arms, matched_draw, percentile_among
from betasched.core.errors import ConfigError
from betasched.core.surgery import Budget, repair_outcome, surgical_finetune
from betasched.training.model import ResNet18


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    data = {"x_train": torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8),
            "y_train": torch.randint(0, 10, (64,))}
    return ResNet18(width=4), data


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_frozen_parameters_are_bit_for_bit_unchanged(tiny, dtype):
    model, data = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    repaired, _ = surgical_finetune(model, ["layer3", "fc"], data["x_train"].float(), data["y_train"],
                                    Budget(steps=3, lr=0.1, batch_size=16, autocast_dtype=dtype))
    # under bf16 autocast the weights themselves stay fp32 (only the forward pass is bf16)
    assert all(p.dtype == torch.float32 for p in repaired.parameters())
    for n, p in repaired.named_parameters():
        if n.startswith(("layer3", "fc")):
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]), n
    for n, b in repaired.named_buffers():  # BN running statistics stay frozen
        assert torch.equal(b, buffers[n]), n
    # The original model is untouched.
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_bf16_autocast_is_the_fp32_step_at_bf16_rounding(tiny):
    model, data = tiny
    x, y = data["x_train"].float() / 255, data["y_train"]
    runs = [surgical_finetune(model, ["fc"], x, y, Budget(steps=1, lr=0.1, batch_size=64, autocast_dtype=d))[0]
            for d in (None, torch.bfloat16)]
    start, fp32, bf16 = model.fc.weight, runs[0].fc.weight, runs[1].fc.weight
    step = (fp32 - start).norm()
    assert step > 0 and not torch.equal(fp32, bf16)  # autocast is in effect
    assert (bf16 - fp32).norm() < 0.1 * step  # and takes the same step, to bf16 precision


def test_trained_fraction_counts_the_parameters(tiny):
    model, data = tiny
    _, fraction = surgical_finetune(model, ["layer4", "fc"], data["x_train"].float(), data["y_train"],
                                    Budget(steps=1, batch_size=8))
    total = sum(p.numel() for p in model.parameters())
    counted = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("layer4", "fc")))
    assert fraction == counted / total


def test_outcome_on_a_hand_made_prediction_pair():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    before = torch.tensor([0, 1, 2, 3, 9, 9, 9, 9])  # 4 right
    after = torch.tensor([0, 1, 9, 3, 4, 5, 6, 9])   # fixed 4,5,6; broke 2
    out = repair_outcome(before, after, labels)
    assert (out["fixed"], out["broken"], out["net"]) == (3, 1, 2)
    assert out["acc_before"] == 0.5 and out["acc_after"] == 0.75


def test_mcnemar_exact_on_known_tables():
    # Discordant 1 vs 9: two-sided binomial p = 2 * (1 + 10) / 2^10 = 0.021484375.
    assert mcnemar_exact(9, 1) == pytest.approx(0.021484375)
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)


def test_bad_budget_and_groups(tiny):
    model, data = tiny
    x, y = data["x_train"].float(), data["y_train"]
    with pytest.raises(ConfigError, match="steps=0"):
        Budget(steps=0)
    with pytest.raises(ValueError, match="repair.lr=inf"):
        Budget(steps=1, lr=float("inf"))
    with pytest.raises(TypeError, match="repair.steps='3'"):
        Budget(steps="3")
    with pytest.raises(ConfigError, match="group list is empty"):
        surgical_finetune(model, [], x, y, Budget(steps=1))
    with pytest.raises(ConfigError, match="no layer group named layer9"):
        surgical_finetune(model, ["layer9"], x, y, Budget(steps=1))


def test_augment_and_weights_are_the_callers(tiny):
    """The input pipeline is an argument: an augmentation that zeroes the batch leaves only the
    biases to learn from, and a zero weight on every image but one trains on that one alone."""
    model, data = tiny
    x, y = data["x_train"].float(), data["y_train"]
    seen = []

    def augment(xb, gen):
        seen.append(len(xb))
        return torch.zeros_like(xb)

    repaired, _ = surgical_finetune(model, ["conv1"], x, y, Budget(steps=2, lr=0.1, batch_size=16, weight_decay=0.0),
                                    augment=augment)
    assert seen == [16, 16]
    assert torch.equal(repaired.conv1.weight, model.conv1.weight)  # zero input: no gradient to conv1
    w = torch.zeros(len(y))
    w[0] = 1.0
    a, _ = surgical_finetune(model, ["fc"], x, y, Budget(steps=4, lr=0.1, batch_size=64), weights=w)
    b, _ = surgical_finetune(model, ["fc"], x[:1].repeat(64, 1, 1, 1), y[:1].repeat(64),
                             Budget(steps=4, lr=0.1, batch_size=64))
    torch.testing.assert_close(a.fc.weight, b.fc.weight, rtol=1e-4, atol=1e-6)


def test_arms_and_matched_draw():
    sizes = {"conv1": 1728, "bn1": 128, "layer1": 147968, "layer2": 525568,
             "layer3": 2099712, "layer4": 8393728, "fc": 5130}
    scores = {g: float(i) for i, g in enumerate(sizes)}
    arms = build_arms(scores, sizes, ["fc", "layer4", "layer3"], k=3, n_random=4, seed=0)
    names = [a.name for a in arms]
    assert names[:6] == ["flagged", "full", "fc_only", "lowest_k", "param_matched", "auto_rgn"]
    assert sum(a.random for a in arms) == 4
    assert set(next(a for a in arms if a.name == "lowest_k").groups) == {"bn1", "conv1", "layer1"}
    # Neither the flagged set, nor a subset, nor a superset: those retrain what the flagged arm does.
    for target in (["layer1", "layer2"], ["fc", "layer4", "layer3"], ["conv1"]):
        for seed in range(5):
            pick, frac = matched_draw(sizes, target, seed=seed)
            assert not set(pick) <= set(target) and not set(pick) >= set(target), (target, pick)
            assert frac == pytest.approx(sum(sizes[g] for g in pick) / sum(sizes.values()))
    pick, frac = matched_draw({"a": 100, "b": 50, "c": 104, "d": 3}, ["a"], seed=0)
    assert pick == ["c"]  # within 5% of a's 100 parameters
    assert matched_draw({"a": 1, "b": 2}, ["a", "b"], seed=0) is None  # every other set is a subset
    assert percentile_among(3, [1, 2, 3, 4]) == pytest.approx(62.5)
