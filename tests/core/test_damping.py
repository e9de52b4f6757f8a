"""Scan II: damping labels from the recurrence's roots against simulated heavy-ball iterates; beta_curv
that refuses a curvature <= 0; the Hessian's options (weight decay, dropout, BatchNorm mode); error
bars (Hutchinson's standard error, Lanczos's residual) and the spectral density against exact
Hessians."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from betasched.core.curvature import CurvatureEstimate, HessianOperator, curvature, hutchinson, lanczos, spectral_density
from betasched.analysis.stats import expected_random_jaccard
from betasched.core.damping import damping, label, spectral_radius, stability_ratio, zeta, zeta_discrete
from betasched.core.scheduler import MomentumScheduler
from betasched.core.schedules import beta_curv
from betasched.training.engine import CurvatureTracker, RunConfig
from betasched.training.state import TrainState

from test_curvature import EIG, Quadratic, _loss


@pytest.fixture(autouse=True)
def _double():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _recurrence(alpha, mu, lam, steps=2000):
    """x_{t+1} = (1 + mu - alpha lam) x_t - mu x_{t-1} from x_0 = x_{-1} = 1 (heavy ball at rest)."""
    prev, x, path = 1.0, 1.0, [1.0]
    for _ in range(steps):
        prev, x = x, (1 + mu - alpha * lam) * x - mu * prev
        path.append(x)
    return path


def _sign_changes(path):
    return sum((a > 0) != (b > 0) for a, b in zip(path, path[1:]) if a != 0 and b != 0)


@pytest.mark.parametrize("alpha,mu,lam,expected", [
    (0.01, 0.9, 1.0, "under"),        # complex roots: rotates, changes sign again and again, converges
    (0.04, 0.95, 2.0, "under"),
    (0.01, 0.2, 1.0, "over"),         # real positive roots: no sign change, converges
    (0.4, 0.0, 1.0, "over"),          # the paper's mu clipped to 0 at alpha 0.4: plain GD, never changes sign
    (0.25, 0.25, 1.0, "critical"),    # the exact double root at alpha lam = 0.25 (the continuous zeta says 0.75)
    (0.1, (1 - math.sqrt(0.1)) ** 2, 1.0, "critical"),
    (1.8, 0.04, 1.0, "oscillating"),  # a real negative root: the sign flips every step, converges
    (3.0, 0.2, 1.0, "unstable"),      # real roots, spectral radius 1.68: not over-damped
    (2.15, 0.0, 1.0, "unstable"),     # GD past 2/alpha
    (0.1, 0.5, -1.0, "no_restoring"),  # lambda < 0: a root above 1, the iterates run away
    (0.1, 0.5, 0.0, "no_restoring"),
])
def test_each_label_matches_the_simulated_iterates(alpha, mu, lam, expected):
    got = label(alpha, mu, lam)
    assert got == expected
    path = _recurrence(alpha, mu, lam)
    flips = _sign_changes(path)
    if got in ("under", "critical", "over", "oscillating"):
        assert abs(path[-1]) < 1e-3 * max(abs(v) for v in path), "a stable label must converge"
        assert spectral_radius(alpha, mu, lam) < 1
    if got == "under":
        assert flips >= 3
    elif got == "over" or got == "critical":
        assert flips <= 1  # real positive (double) roots: at most one crossing
    elif got == "oscillating":
        tail = path[100:300]
        assert _sign_changes(tail) == len(tail) - 1  # every step
    elif got == "unstable":
        assert abs(path[200]) > 1e6
    else:  # no restoring force: never returns to 0
        assert abs(path[200]) >= 1.0


def test_discrete_zeta_is_one_at_the_double_root_and_tends_to_zeta():
    for x in (0.01, 0.1, 0.25, 0.5):
        mu = (1 - math.sqrt(x)) ** 2
        assert zeta_discrete(x, mu, 1.0) == pytest.approx(1.0)
        assert zeta(x, mu, 1.0) == pytest.approx(1 - math.sqrt(x) / 2)  # the continuous ratio drifts under
    for x in (1e-4, 1e-6, 1e-8):  # along the paper's form, alpha lam -> 0 (and mu -> 1): zeta_d -> zeta
        mu = 1 - 2 * math.sqrt(x)
        assert zeta_discrete(x, mu, 1.0) / zeta(x, mu, 1.0) == pytest.approx(1.0, abs=2 * math.sqrt(x))
    assert math.isnan(zeta_discrete(0.1, 0.5, -2.0)) and damping(0.1, 0.5, -2.0)["label"] == "no_restoring"
    assert stability_ratio(0.1, 0.0, 20.0) == pytest.approx(1.0)  # Cohen et al.'s 2 / eta at mu = 0


def test_beta_curv_past_alpha_lambda_one_keeps_the_top_mode_stable():
    # the laptop's step-62 point: alpha 0.0905, lambda_max 23.8; mu = 0 would diverge (|1 - alpha lam| = 1.15)
    alpha, lam = 0.0905, 23.8
    assert label(alpha, 0.0, lam) == "unstable"
    mu = beta_curv(alpha, 0, 1, 0, alpha, lam=lam)
    assert mu == pytest.approx((math.sqrt(alpha * lam) - 1) ** 2)
    assert spectral_radius(alpha, mu, lam) == pytest.approx(math.sqrt(alpha * lam) - 1)
    assert all(spectral_radius(alpha, m / 100, lam) >= spectral_radius(alpha, mu, lam) - 1e-12 for m in range(99))
    # continuous at alpha lam = 1, the paper's form below it
    clipped = lambda x: min(max(beta_curv(x, 0, 1, 0, x, lam=1.0), 0.0), 0.99)  # noqa: E731 (the scheduler's clip)
    assert clipped(1.0 - 1e-9) == clipped(1.0) == pytest.approx(clipped(1.0 + 1e-9), abs=1e-9) == 0.0
    assert clipped(0.04) == pytest.approx(1 - 2 * math.sqrt(0.04))
    assert beta_curv(0.1, 0, 1, 0, 0.1, lam=50.0) > 0.99  # alpha lam = 5: beyond any stable mu, clipped high


def test_lam_other_than_one_follows_its_formula():
    p = nn.Parameter(torch.zeros(3))
    for name, lam, formula in [("beta", 4.0, lambda a: 1 - 2 * math.sqrt(a * 4.0)),
                               ("beta_exact", 4.0, lambda a: (1 - math.sqrt(a * 4.0)) ** 2),
                               ("beta_curv", 0.25, lambda a: 1 - 2 * math.sqrt(a * 0.25))]:
        opt = torch.optim.SGD([p], lr=0.01, momentum=0.9)
        sched = MomentumScheduler(opt, name, total_steps=10, lam=lam)
        assert sched.get_last_momentum()[0] == pytest.approx(formula(0.01))
    sched.set_curvature(9.0)
    assert sched.get_last_momentum()[0] == pytest.approx(1 - 2 * math.sqrt(0.09))


class SaddleAtZero(nn.Module):
    """Logits (sum w^2, 0) with label 0 at w = 0: the loss softplus(-|w|^2) has Hessian -I there."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        top = (self.w ** 2).sum().expand(len(x))
        return torch.stack([top, torch.zeros_like(top)], dim=1)


@pytest.mark.parametrize("source", ["lambda_max", "lambda_mean"])
def test_beta_curv_refuses_a_negative_curvature_instead_of_mu_099(source):
    model = SaddleAtZero()
    lr = 0.01
    cfg = RunConfig("sgd", "beta_curv", 0, 1, 4, lr, weight_decay=0.0, channels_last=False,
                    schedule_options={"source": source, "every": 1, "batch_size": 4, "steps": 4, "samples": 4,
                                      "warm_start": True, "rtol": 0.0})
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    y = torch.zeros(4, dtype=torch.long)
    est = curvature(model, x.double(), y, steps=4, samples=4)
    assert est.lambda_max == pytest.approx(-1.0) and est.lambda_mean == pytest.approx(-1.0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = MomentumScheduler(opt, "beta_curv", total_steps=10, lam=1.0)
    state = SimpleNamespace(step=0, model=model, momentum_scheduler=sched,
                            curvature={"refreshes": 0, "refused": 0, "hvps": 0, "vector": None})
    tracker = CurvatureTracker(cfg, x, y)
    for step in range(3):
        state.step = step
        tracker.update(state)
    assert state.curvature["refreshes"] == 3 and state.curvature["refused"] == 3
    assert sched.options["lam"] == 1.0  # kept the starting value
    assert sched.get_last_momentum()[0] == pytest.approx(1 - 2 * math.sqrt(lr)) and sched.get_last_momentum()[0] < 0.99


def test_tracker_counts_live_in_the_resumable_state():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = TrainState(model, opt, lr_sched, MomentumScheduler(opt, "beta_curv", total_steps=5), torch.Generator(),
                       (), 5)
    state.curvature.update(refreshes=4, refused=1, hvps=30)
    other = TrainState(model, opt, lr_sched, MomentumScheduler(opt, "beta_curv", total_steps=5), torch.Generator(),
                       (), 5)
    other.load_state_dict(state.state_dict())
    assert other.curvature == state.curvature


def test_weight_decay_shifts_every_eigenvalue_by_exactly_wd():
    model, zero = Quadratic(EIG), torch.zeros(1)
    plain = lanczos(HessianOperator(model, zero, zero, loss_fn=_loss), steps=20)
    decayed = lanczos(HessianOperator(model, zero, zero, loss_fn=_loss, weight_decay=5e-4), steps=20)
    assert decayed["lambda_max"] - plain["lambda_max"] == pytest.approx(5e-4, abs=1e-9)
    assert decayed["lambda_min"] - plain["lambda_min"] == pytest.approx(5e-4, abs=1e-9)
    assert plain["lambda_min"] == pytest.approx(0.1, rel=1e-9)  # lambda_min from the same tridiagonal


def test_dropout_masks_come_from_the_seed_not_the_global_stream():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 3))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    a = curvature(model, x, y, steps=5, samples=5, seed=7)
    torch.manual_seed(12345)  # a different global state must not matter
    before = torch.get_rng_state()
    b = curvature(model, x, y, steps=5, samples=5, seed=7)
    assert torch.equal(before, torch.get_rng_state())  # and the global stream is not consumed
    assert a.lambda_max == b.lambda_max and a.lambda_mean == b.lambda_mean
    assert curvature(model, x, y, steps=5, samples=5, seed=8).lambda_max != a.lambda_max


def test_batchnorm_mode_is_an_option_and_changes_the_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()(torch.randn(64, 5) * 3 + 1)  # running statistics away from the batch's
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    train = curvature(model, x, y, steps=10, samples=5, bn_mode="train")
    evald = curvature(model, x, y, steps=10, samples=5, bn_mode="eval")
    assert train.lambda_max != pytest.approx(evald.lambda_max, rel=1e-3)
    with pytest.raises(ValueError, match="bn_mode"):
        curvature(model, x, y, bn_mode="frozen")


def test_hutchinson_standard_error_covers_the_exact_trace_at_its_nominal_rate():
    model, zero = Quadratic(EIG, seed=3), torch.zeros(1)
    exact = sum(EIG) / len(EIG)
    hits, repeats = 0, 400
    for seed in range(repeats):
        h = hutchinson(HessianOperator(model, zero, zero, loss_fn=_loss), samples=30, seed=seed)
        hits += abs(h["mean"] - exact) <= 1.96 * h["se"]
    assert 0.90 <= hits / repeats <= 0.985  # nominal 0.95; 400 repeats: one binomial SE is 0.011
    stop = hutchinson(HessianOperator(model, zero, zero, loss_fn=_loss), samples=2000, seed=1, rtol=0.05)
    assert stop["samples"] < 2000 and stop["se"] <= 0.05 * abs(stop["mean"])


def test_lanczos_residual_bounds_the_distance_to_a_true_eigenvalue_and_warm_start_saves_products():
    model, zero = Quadratic(EIG, seed=5), torch.zeros(1)
    for steps in (2, 3, 4, 6):
        r = lanczos(HessianOperator(model, zero, zero, loss_fn=_loss), steps=steps, seed=1)
        assert min(abs(r["lambda_max"] - e) for e in EIG) <= r["residual"] * (1 + 1e-9)
    cold = lanczos(HessianOperator(model, zero, zero, loss_fn=_loss), steps=20, seed=2, rtol=1e-3)
    warm = lanczos(HessianOperator(model, zero, zero, loss_fn=_loss), steps=20, seed=2, rtol=1e-3,
                   start=[v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(9))
                          for v in cold["vector"]])
    assert warm["lambda_max"] == pytest.approx(55.0, rel=1e-3) and warm["hvps"] < cold["hvps"]


def test_spectral_density_matches_the_exact_spectrum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    op = HessianOperator(model, x, y)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def loss_of(v):
        chunks, i = [], 0
        for s in shapes:
            chunks.append(v[i:i + math.prod(s)].view(s))
            i += math.prod(s)
        w1, b1, w2, b2 = chunks
        return nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))
    runs = [lanczos(op, steps=8, seed=s) for s in range(400)]
    nodes, weights = spectral_density(runs)
    assert sum(weights) == pytest.approx(1.0)
    gaps = eig[1:] - eig[:-1]
    cut = float((eig[1:] + eig[:-1])[gaps.argmax()] / 2)  # in the spectrum's widest gap: a CDF 8 nodes resolve
    # Gauss quadrature with 8 nodes is exact for polynomials of degree < 16, so each run's moment is
    # v^T H^k v of a random unit vector: unbiased for tr(H^k) / d. Judged within 4 standard errors.
    stats = {f"moment {k}": ([sum(w * n ** k for n, w in zip(r["nodes"], r["weights"])) for r in runs],
                             float((eig ** k).mean())) for k in (1, 2, 3)}
    for name, (per_run, exact) in stats.items():
        mean = sum(per_run) / len(per_run)
        se = (sum((v - mean) ** 2 for v in per_run) / (len(per_run) - 1) / len(per_run)) ** 0.5
        assert mean == pytest.approx(sum(w * n ** int(name[-1]) for n, w in zip(nodes, weights)))
        assert abs(mean - exact) <= 4 * se, name
        assert se <= 0.15 * float((eig.abs() ** int(name[-1])).mean()), name  # and the test has power
    share = sum(w for n, w in zip(nodes, weights) if n > cut)  # the histogram: the mass above the gap
    assert abs(share - float((eig > cut).double().mean())) <= 0.05
    # A designed spectrum (half of it a cluster at 0.1, a fifth above 10): the mass on each side of a gap
    zero = torch.zeros(1)
    runs = [lanczos(HessianOperator(Quadratic(EIG), zero, zero, loss_fn=_loss), steps=8, seed=s) for s in range(200)]
    nodes, weights = spectral_density(runs)
    for cut, exact in ((0.3, 0.5), (10.0, 0.8)):
        assert sum(w for n, w in zip(nodes, weights) if n < cut) == pytest.approx(exact, abs=0.04), cut


def _grouped_point(optimizer, seed, step, lams, alpha=0.01, mu=0.5):
    from betasched.pipeline.scan import _group_damping

    groups = {g: CurvatureEstimate(dim=1, hvps=0, lambda_max=lam, residual=0.0, lambda_mean=lam / 10, lambda_mean_se=0.0)
              for g, lam in lams.items()}
    return {"run": f"{optimizer}-beta-{seed}", "optimizer": optimizer, "seed": seed, "step": step, "frac": 0.5,
            "alpha": alpha, "groups": _group_damping(groups, alpha, mu, (0.8, 1.25))}


def _record(optimizer, seed, scores, k=2, granularity="group"):
    from betasched.analysis.records import AttributionRecord
    from betasched.core.ranking import problem_layers

    return AttributionRecord(run=f"{optimizer}-beta-{seed}", optimizer=optimizer, seed=seed, schedule="beta",
                             split="val", method="rgn_ratio", granularity=granularity, k=k, scores=scores,
                             param_counts={g: 1 for g in scores}, problem_layers=problem_layers(scores, k),
                             mad_outliers=[], ranks={}, n_errors=1, n_correct=1, n_misclassified=1, n_images=2,
                             error_indices=[0])


def test_the_localize_link_compares_flagged_groups_with_the_least_damped_ones():
    """Scores ranked like the groups' curvature give Jaccard 1 and tau 1; ranked against it, Jaccard 0
    and tau -1. Only each run's last grouped point counts; a per-module attribution is left out."""
    from betasched.pipeline.scan import localize_link

    lams = {"conv1": 1.0, "layer1": 2.0, "layer2": 40.0, "fc": 80.0}
    early = _grouped_point("sgd", 0, 10, {g: 1.0 + i for i, g in enumerate(lams)})  # superseded by step 20
    points = [early, _grouped_point("sgd", 0, 20, lams), _grouped_point("adam", 0, 20, lams),
              {"run": "sgd-beta-0", "optimizer": "sgd", "seed": 0, "step": 30}]  # the LR's end: no groups
    same = _record("sgd", 0, {"conv1": 0.1, "layer1": 0.2, "layer2": 0.3, "fc": 0.4})
    opposite = _record("adam", 0, {"conv1": 0.4, "layer1": 0.3, "layer2": 0.2, "fc": 0.1})
    link = localize_link(points, [same, opposite, _record("sgd", 1, same.scores, granularity="module")], k=2)
    by_run = {r["optimizer"]: r for r in link["runs"]}
    assert set(by_run) == {"sgd", "adam"} and by_run["sgd"]["step"] == 20
    assert by_run["sgd"]["most_curved"] == ["fc", "layer2"] and by_run["sgd"]["jaccard"] == 1.0
    assert by_run["sgd"]["kendall_tau"] == pytest.approx(1.0) and by_run["adam"]["kendall_tau"] == pytest.approx(-1.0)
    assert by_run["adam"]["jaccard"] == 0.0 and link["jaccard_mean"] == 0.5
    # alpha lam = 0.4 and 0.8 at mu = 0.5 have complex roots (under-damped); 0.01 and 0.02 real positive ones
    assert by_run["sgd"]["under_damped"] == ["layer2", "fc"] and by_run["sgd"]["flagged_under"] == 2
    assert link["chance_jaccard"] == pytest.approx(expected_random_jaccard(4, 2))
    assert localize_link(points[-1:], [same], k=2)["runs"] == [] and "keep_points" in \
        localize_link(points[-1:], [same], k=2)["note"]
