import pytest
import torch
from torch import nn

from betasched.analysis.stats import expected_random_jaccard, jaccard, p_identical, p_jaccard_at_least
from betasched.core.attribution import AttributionError, attribute, layer_groups, mad_outliers, problem_layers
from betasched.core.errors import ConfigError
from betasched.training.model import ResNet18


class ThreeBranches(nn.Module):
    """Logits = g1(x[:, 0:2]) + g2(x[:, 2:4]) + g3(x[:, 4:6]); all three start as identity."""

    def __init__(self):
        super().__init__()
        for name in ("g1", "g2", "g3"):
            lin = nn.Linear(2, 2, bias=False)
            lin.weight.data = torch.eye(2)
            setattr(self, name, lin)

    def forward(self, x):
        return self.g1(x[:, 0:2]) + self.g2(x[:, 2:4]) + self.g3(x[:, 4:6])


def branch_data(n=40, seed=0):
    """Half the images are wrong because of g1's input alone; the rest are right through g2/g3."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    onehot = nn.functional.one_hot(y, 2).float()
    x = torch.zeros(n, 6)
    err = torch.arange(n) % 2 == 0
    x[err, 0:2] = 3 * (1 - onehot[err]) + 0.1 * torch.rand(int(err.sum()), 2, generator=g)
    x[~err, 0:2] = 0.1 * (1 - onehot[~err])
    x[~err, 2:4] = 3 * onehot[~err]
    x[~err, 4:6] = 2 * onehot[~err] + 0.1 * torch.rand(int((~err).sum()), 2, generator=g)
    return x, y


@pytest.mark.parametrize("method", ["rgn_ratio", "rgn", "grad_norm", "taylor", "fisher"])
def test_the_group_carrying_the_errors_ranks_first(method):
    x, y = branch_data()
    res = attribute(ThreeBranches(), x, y, method=method, batch_size=7)
    assert res.n_errors == 20 and res.n_correct == 20
    assert problem_layers(res.scores, k=1) == ["g1"]


@pytest.mark.parametrize("method", ["rgn_ratio", "taylor", "fisher"])
def test_scores_do_not_depend_on_the_accumulation_batch(method):
    torch.manual_seed(0)
    model = ResNet18(width=4)
    x = torch.randn(60, 3, 32, 32)
    y = torch.randint(0, 10, (60,))
    a = attribute(model, x, y, method=method, batch_size=7).scores
    b = attribute(model, x, y, method=method, batch_size=60).scores
    assert list(a) == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    for name in a:
        assert a[name] == pytest.approx(b[name], rel=1e-4)


def test_module_granularity_lists_every_conv_bn_linear():
    groups = layer_groups(ResNet18(width=4), "module")
    assert "layer1.0.conv1" in groups and "fc" in groups and "layer2.0.shortcut.1" in groups
    assert len(groups) == 1 + 1 + 4 * 2 * 4 + 3 * 2 + 1  # stem conv+bn, 8 blocks x 4, 3 shortcuts x 2, fc


def test_bad_arguments():
    x, y = branch_data()
    with pytest.raises(ConfigError, match="^unknown method"):
        attribute(ThreeBranches(), x, y, method="shap")
    with pytest.raises(ConfigError, match="^unknown granularity"):
        attribute(ThreeBranches(), x, y, granularity="neuron")
    scores = {"a": 1.0, "b": 2.0, "c": 3.0}
    for k in (0, 3, -1):
        with pytest.raises(ConfigError, match=f"^k={k}"):
            problem_layers(scores, k=k)
    with pytest.raises(TypeError, match="^k=1.0"):
        problem_layers(scores, k=1.0)
    with pytest.raises(TypeError, match=r"images \(N, ...\) and integer labels \(N,\).*got \(40, 6\).*\(39,\)"):
        attribute(ThreeBranches(), x, y[:39])
    with pytest.raises(TypeError, match="integer labels"):
        attribute(ThreeBranches(), x, y.float())
    with pytest.raises(TypeError, match="images are torch.uint8, not floating point: pass prepare="):
        attribute(ThreeBranches(), (x * 10).to(torch.uint8), y)
    res = attribute(ThreeBranches(), (x * 10).to(torch.uint8), y, prepare=lambda b: b.float() / 10)
    assert res.n_errors == res.n_correct <= res.n_misclassified


def test_no_misclassified_image_is_a_clear_error():
    x, y = branch_data()
    keep = torch.arange(len(y)) % 2 == 1  # only the correct half
    with pytest.raises(AttributionError, match="misclassifies none of the 20"):
        attribute(ThreeBranches(), x[keep], y[keep])


def test_mad_outliers():
    scores = {"a": 1.0, "b": 1.1, "c": 0.9, "d": 1.0, "e": 5.0}
    assert mad_outliers(scores) == ["e"]


def test_overlap_measures_against_known_values():
    assert jaccard(["a", "b", "c"], ["a", "b", "d"]) == pytest.approx(0.5)
    assert jaccard(["a"], ["b"]) == 0.0
    assert p_identical(7, 3) == pytest.approx(1 / 35)
    # Exact enumeration for 7 groups, k = 3: P(|A n B| = i) = C(3,i) C(4,3-i) / 35.
    expected = (0 * 4 + (1 / 5) * 18 + (2 / 4) * 12 + 1 * 1) / 35
    assert expected_random_jaccard(7, 3) == pytest.approx(expected)
    assert expected_random_jaccard(7, 3) == pytest.approx(0.3, abs=0.01)
    assert p_jaccard_at_least(7, 3, 1.0) == pytest.approx(1 / 35)
    assert p_jaccard_at_least(7, 3, 0.0) == pytest.approx(1.0)
