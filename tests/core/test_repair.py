import pytest
import torch

from betasched.analysis.stats import mcnemar_exact
from betasched.analysis.records import ArmResult, RepairModel
from betasched.core.controls import build_arms, fc_toggled, matched_draw, percentile_among, stratified_draws
from betasched.core.errors import ConfigError
from betasched.core.surgery import Budget, repair_outcome, surgical_finetune
from betasched.pipeline.treat import place_among_random
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
    assert (out.fixed, out.broken, out.net) == (3, 1, 2)
    assert out.acc_before == 0.5 and out.acc_after == 0.75
    assert (out.flipped, out.errors_before) == (4, 4)  # 2, 4, 5, 6 changed; 4..7 were wrong


def test_churn_counts_every_changed_prediction_right_or_wrong():
    # right before: T T F T; right after: T F F F. Image 1 (1 -> 2) and image 3 (3 -> 1) break;
    # image 2 stays 2, wrong both times: no change, no fix.
    out = repair_outcome(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 2, 1]), torch.tensor([0, 1, 3, 3]))
    assert (out.fixed, out.broken, out.flipped, out.errors_before) == (0, 2, 2, 1)
    # A wrong prediction that moves to another wrong class flips without fixing or breaking:
    # image 3 (9 -> 8, label 3); image 1 breaks (1 -> 2), image 2 is fixed (9 -> 2).
    out = repair_outcome(torch.tensor([0, 1, 9, 9, 4]), torch.tensor([0, 2, 2, 8, 4]), torch.tensor([0, 1, 2, 3, 4]))
    assert (out.fixed, out.broken, out.net) == (1, 1, 0)
    assert (out.flipped, out.errors_before) == (3, 2)


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
    with pytest.raises(ConfigError, match="^steps=0"):
        Budget(steps=0)
    with pytest.raises(ValueError, match="^lr=inf"):
        Budget(steps=1, lr=float("inf"))
    with pytest.raises(TypeError, match="^steps='3'"):
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
    assert names[:7] == ["flagged", "step_control", "fc_only", "lowest_k", "param_matched", "auto_rgn", "fc_toggled"]
    assert names[7:] == [f"random_{s}_layer4_{i}" for s in ("with", "without") for i in range(4)]
    assert sum(a.random for a in arms) == 8
    assert "full" not in names
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


SIZES = {"conv1": 1728, "bn1": 128, "layer1": 147968, "layer2": 525568,
         "layer3": 2099712, "layer4": 8393728, "fc": 5130}


def _arms(flagged, sizes=SIZES, k=3, n_random=5, seed=0):
    scores = {g: float(i) for i, g in enumerate(sizes)}
    return {a.name: a for a in build_arms(scores, sizes, flagged, k=k, n_random=n_random, seed=seed)}


@pytest.mark.parametrize("flagged", [["fc", "layer4", "layer3"], ["layer4", "layer3", "layer2"], ["layer1", "fc"]])
def test_fc_toggled_differs_from_flagged_by_fc_alone(flagged):
    arms = _arms(flagged)
    assert set(arms["fc_toggled"].groups) ^ set(arms["flagged"].groups) == {"fc"}
    assert ("fc" in arms["fc_toggled"].groups) is ("fc" not in flagged)
    assert arms["fc_toggled"].stratum == arms["flagged"].stratum  # fc is not the largest group
    assert not arms["fc_toggled"].random


def test_fc_toggled_is_absent_when_fc_alone_is_flagged():
    assert "fc_toggled" not in _arms(["fc"], k=1)
    assert fc_toggled(["fc"]) == []
    assert fc_toggled(["layer4", "fc"]) == ["layer4"] and fc_toggled(["layer4"]) == ["layer4", "fc"]
    # no group named fc: the output head is the last group, as for fc_only
    sizes = {"a": 10, "b": 100, "head": 5}
    arms = _arms(["b"], sizes=sizes, k=1, n_random=1)
    assert arms["fc_only"].groups == ("head",) and arms["fc_toggled"].groups == ("b", "head")


def test_step_control_retrains_every_group_with_the_same_budget():
    arms = _arms(["fc", "layer4", "layer3"])
    assert arms["step_control"].groups == tuple(SIZES)
    assert not arms["step_control"].auto_rgn and not arms["step_control"].random
    assert arms["step_control"].stratum == "with layer4"


@pytest.mark.parametrize("seed", range(4))
def test_random_draws_are_stratified_on_the_largest_group(seed):
    arms = _arms(["fc", "layer4", "layer3"], seed=seed)
    with_ = [a for a in arms.values() if a.random and a.stratum == "with layer4"]
    without = [a for a in arms.values() if a.random and a.stratum == "without layer4"]
    assert len(with_) == len(without) == 5 and sum(a.random for a in arms.values()) == 10
    assert all("layer4" in a.groups and len(set(a.groups)) == 3 for a in with_)
    assert all("layer4" not in a.groups and len(set(a.groups)) == 3 for a in without)
    assert all(a.name.startswith("random_with_layer4_") for a in with_)
    assert all(a.name.startswith("random_without_layer4_") for a in without)
    # every arm knows its stratum, random or not
    assert arms["flagged"].stratum == "with layer4" and arms["fc_only"].stratum == "without layer4"


def test_the_largest_group_comes_from_the_sizes_not_its_name():
    sizes = {**SIZES, "layer2": 10 ** 9}
    arms = _arms(["fc", "layer4", "layer3"], sizes=sizes)
    assert {a.stratum for a in arms.values() if a.random} == {"with layer2", "without layer2"}
    assert arms["flagged"].stratum == "without layer2"
    assert all("layer2" in a.groups for a in arms.values() if a.stratum == "with layer2")


def test_stratified_draws_are_reproducible_and_move_with_the_seed():
    groups = list(SIZES)
    first = stratified_draws(groups, SIZES, 3, 5, seed=0)
    assert first == stratified_draws(groups, SIZES, 3, 5, seed=0)
    assert all(first[s] != stratified_draws(groups, SIZES, 3, 5, seed=1)[s] for s in first)
    # each stratum has its own stream: more draws extend both (with one shared stream, more
    # with-draws would shift every without-draw)
    more = stratified_draws(groups, SIZES, 3, 8, seed=0)
    assert all(more[s][:5] == first[s] for s in first)
    # k = every group: no set lacks the largest one
    assert stratified_draws(groups, SIZES, len(groups), 2, seed=0)["without layer4"] == []


def _result(arm, net, stratum, random=False):
    return ArmResult(arm=arm, groups=[], param_fraction=0.1, fixed=max(net, 0), broken=max(-net, 0), net=net,
                     flipped=abs(net), errors_before=10, acc_before=0.5, acc_after=0.5, mcnemar_p=1.0,
                     stratum=stratum, random=random)


def test_random_nets_by_stratum_and_percentile_in_stratum():
    w, wo = "with layer4", "without layer4"
    results = place_among_random([
        _result("flagged", 5, w), _result("fc_only", 5, wo),
        *[_result(f"random_with_layer4_{i}", n, w, True) for i, n in enumerate([10, 20])],
        *[_result(f"random_without_layer4_{i}", n, wo, True) for i, n in enumerate([0, 1, 2])],
    ])
    m = RepairModel("sgd-beta-s0", "sgd", 0, ["fc", "layer4", "layer3"], results)
    assert m.flagged_stratum() == w
    assert m.random_nets(m.flagged_stratum()) == [10, 20]
    assert m.random_nets(wo) == [0, 1, 2]
    assert m.random_nets() == [10, 20, 0, 1, 2]
    flagged, fc_only = m.arm("flagged"), m.arm("fc_only")
    assert flagged.percentile_among_random == 60.0  # beats 0, 1, 2 of the five
    assert flagged.percentile_in_stratum == 0.0  # beats neither draw of its own stratum
    assert fc_only.percentile_in_stratum == 100.0
    assert m.arm("random_with_layer4_1").percentile_in_stratum == 75.0  # ties itself: counts half
