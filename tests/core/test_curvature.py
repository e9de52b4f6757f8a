"""Curvature estimates against exact Hessians, and the damping regime against simulated iterates."""
import dataclasses
import math

import pytest
import torch
from torch import nn

from betasched.core.curvature import HessianOperator, curvature, mean_curvature, top_eigenvalue
from betasched.core.damping import label, zeta, zeta_adam


class Quadratic(nn.Module):
    """f(theta) = theta^T A theta / 2, with A = Q diag(eigenvalues) Q^T: Hessian A, exactly."""

    def __init__(self, eigenvalues, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
        self.register_buffer("a", q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T)
        self.theta = nn.Parameter(torch.randn(len(eigenvalues), generator=g, dtype=torch.float64))

    def forward(self, x):
        return 0.5 * self.theta @ self.a @ self.theta


def _loss(out, y):
    return out


EIG = [0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0] + [0.1] * 10


@pytest.fixture(autouse=True)
def _double():  # the exact checks want double precision
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_exact_quadratic_top_and_mean_within_one_percent():
    model = Quadratic(EIG)
    op = HessianOperator(model, torch.zeros(1), torch.zeros(1), loss_fn=_loss)
    top = top_eigenvalue(op, steps=20)
    assert abs(top - 55.0) / 55.0 <= 0.01
    assert op.calls == 11  # 11 distinct eigenvalues: the Krylov space is exhausted, Lanczos stops exact
    mean = mean_curvature(HessianOperator(model, torch.zeros(1), torch.zeros(1), loss_fn=_loss), samples=20000)
    assert abs(mean - sum(EIG) / len(EIG)) / (sum(EIG) / len(EIG)) <= 0.01


def test_one_estimate_asked_for_costs_only_its_own_products():
    model, zero = Quadratic(EIG), torch.zeros(1)
    both = curvature(model, zero, zero, steps=8, samples=5, seed=3, loss_fn=_loss)
    top = curvature(model, zero, zero, steps=8, samples=5, seed=3, loss_fn=_loss, estimates=("lambda_max",))
    mean = curvature(model, zero, zero, steps=8, samples=5, seed=3, loss_fn=_loss, estimates=("lambda_mean",))
    assert top.lambda_max == both.lambda_max and mean.lambda_mean == both.lambda_mean
    assert top.lambda_mean is None and mean.lambda_max is None and mean.density is None
    assert top.hvps + mean.hvps == both.hvps and mean.hvps == 5
    with pytest.raises(ValueError, match="lambda_max or lambda_mean"):
        curvature(model, zero, zero, loss_fn=_loss, estimates=("trace",))


@pytest.mark.slow  # the exact Hessian by autograd
def test_tiny_mlp_against_autograd_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.detach().flatten() for p in params])

    def loss_of(flat):
        chunks, i = [], 0
        for s in shapes:
            n = math.prod(s)
            chunks.append(flat[i:i + n].view(s))
            i += n
        w1, b1, w2, b2 = chunks
        return nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)

    h = torch.autograd.functional.hessian(loss_of, flat0)
    eig = torch.linalg.eigvalsh(h)
    est = curvature(model, x, y, steps=len(flat0), samples=4000, seed=1)
    assert est.lambda_max == pytest.approx(float(eig.max()), rel=1e-6)
    assert est.lambda_mean == pytest.approx(float(torch.trace(h)) / len(flat0), rel=0.05)
    # A group's block: the Hessian restricted to the last layer's weights.
    told = []  # each group is reported as it is done, with the estimate the result holds
    result = curvature(model, x, y, groups={"hidden": [params[0]], "out": [params[2]]}, steps=8, samples=10,
                       on_estimate=lambda name, e: told.append((name, e)))
    block = result.groups["out"]
    assert told == [("model", dataclasses.replace(result, groups={})), ("hidden", result.groups["hidden"]), ("out", block)]
    idx = slice(sum(math.prod(s) for s in shapes[:2]), sum(math.prod(s) for s in shapes[:3]))
    assert block.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(h[idx, idx]).max()), rel=1e-6)


def test_same_seed_same_estimate_and_no_side_effect():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = curvature(model, x, y, steps=5, samples=5, seed=3)
    b = curvature(model, x, y, steps=5, samples=5, seed=3)
    assert a == b and a.hvps == 10
    assert curvature(model, x, y, steps=5, samples=5, seed=4).lambda_mean != a.lambda_mean
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BN statistics untouched


def _heavy_ball(alpha, mu, lams, steps=60):
    """torch.optim.SGD on sum(lam_i x_i^2 / 2) from x = 1: the iterates of each coordinate."""
    x = nn.Parameter(torch.ones(len(lams)))
    opt = torch.optim.SGD([x], lr=alpha, momentum=mu)
    lam = torch.tensor(lams)
    path = [x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (lam * x * x).sum()).backward()
        opt.step()
        path.append(x.detach().clone())
    return torch.stack(path)


@pytest.mark.parametrize("alpha,mu,lam", [(0.01, 0.9, 1.0), (0.04, 0.95, 2.0)])
def test_under_damped_iterates_change_sign(alpha, mu, lam):
    assert zeta(alpha, mu, lam) < 1 and label(alpha, mu, lam) == "under"
    x = _heavy_ball(alpha, mu, [lam], steps=400)[:, 0]
    assert (torch.sign(x[1:]) != torch.sign(x[:-1])).any()


@pytest.mark.parametrize("alpha,mu,lam", [(0.01, 0.2, 1.0), (0.001, 0.5, 5.0)])
def test_over_damped_iterates_decay_monotonically(alpha, mu, lam):
    assert zeta(alpha, mu, lam) > 1.25 and label(alpha, mu, lam) == "over"
    x = _heavy_ball(alpha, mu, [lam], steps=400)[:, 0]
    assert (x > 0).all() and (x[1:] <= x[:-1]).all()


def test_two_modes_one_under_one_over_and_the_papers_formula():
    alpha = 0.01
    mu = 1 - 2 * math.sqrt(alpha)  # critical for lambda = 1: zeta = 1
    assert zeta(alpha, mu, 1.0) == pytest.approx(1.0) and label(alpha, mu, 1.0) == "critical"
    # lambda = 100: zeta 0.1, oscillates; lambda = 0.01: zeta 10, creeps monotonically.
    x = _heavy_ball(alpha, mu, [100.0, 0.01], steps=300)
    assert zeta(alpha, mu, 100.0) == pytest.approx(0.1) and (torch.sign(x[1:, 0]) != torch.sign(x[:-1, 0])).any()
    assert zeta(alpha, mu, 0.01) == pytest.approx(10.0) and (x[1:, 1] <= x[:-1, 1]).all() and (x[:, 1] > 0).all()
    # The paper's form is the discrete double root minus alpha lambda: just over it, inside the band.
    assert label(alpha, (1 - math.sqrt(alpha)) ** 2, 1.0) == "critical"
    assert zeta_adam(1e-3, 0.9, 4.0) == pytest.approx(zeta(1e-4, 0.9, 4.0))
