import warnings

import pytest
import torch

from betasched.core.errors import ConfigError
from betasched.core.scheduler import MomentumScheduler, warmup_cosine


def _param():
    return torch.nn.Parameter(torch.zeros(3))


def _grad_step(opt, p, g):
    p.grad = torch.full_like(p, g)
    opt.step()


def test_sgd_uses_the_scheduled_momentum():
    p = _param()
    opt = torch.optim.SGD([p], lr=0.01, momentum=0.5)
    sched = MomentumScheduler(opt, "beta")  # lr 0.01 -> mu 0.8
    assert sched.get_last_momentum() == [pytest.approx(0.8)]
    _grad_step(opt, p, 1.0)   # buf = 1
    _grad_step(opt, p, 1.0)   # buf = 0.8 * 1 + 1 = 1.8
    buf = opt.state[p]["momentum_buffer"]
    assert torch.allclose(buf, torch.full((3,), 1.8))
    assert torch.allclose(p.detach(), torch.full((3,), -0.01 * (1 + 1.8)))


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_adam_uses_the_scheduled_beta1(cls):
    p = _param()
    opt = cls([p], lr=0.0025, betas=(0.5, 0.999), weight_decay=0.0)
    sched = MomentumScheduler(opt, "beta")  # 1 - 2 * 0.05 = 0.9
    assert opt.param_groups[0]["betas"] == (pytest.approx(0.9), 0.999)
    _grad_step(opt, p, 1.0)  # exp_avg = 0.1
    _grad_step(opt, p, 2.0)  # exp_avg = 0.9 * 0.1 + 0.1 * 2 = 0.29
    assert torch.allclose(opt.state[p]["exp_avg"], torch.full((3,), 0.29))
    assert sched.get_last_momentum() == [pytest.approx(0.9)]


def test_clip_above_quarter_lr_is_counted():
    opt = torch.optim.SGD([_param()], lr=0.5, momentum=0.9)
    with pytest.warns(UserWarning, match=r"clipped to \[0, 0.99\] at step 0"):
        sched = MomentumScheduler(opt, "beta", max_momentum=0.99)
    assert opt.param_groups[0]["momentum"] == 0.0
    assert sched.clipped_steps == 1 and (sched.clipped_low, sched.clipped_high) == (1, 0)
    assert sched.get_last_raw_momentum() == [pytest.approx(1 - 2 * 0.5 ** 0.5)]
    opt.param_groups[0]["lr"] = 0.0  # beta -> 1, clipped to max_momentum
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second clip is counted, not warned
        sched.step()
        MomentumScheduler(torch.optim.SGD([_param()], lr=0.5, momentum=0.9), "beta", warn_clip=False)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.99)
    assert sched.clipped_steps == 2 and (sched.clipped_low, sched.clipped_high) == (1, 1)


def test_rmsprop_is_refused_with_the_reason():
    opt = torch.optim.RMSprop([_param()], lr=0.01, momentum=0.9)
    with pytest.raises(TypeError, match="RMSprop's momentum averages the preconditioned step"):
        MomentumScheduler(opt, "beta")


@pytest.mark.parametrize("warmup,total,message", [(-1, 10, "warmup_steps=-1"), (3, 0, "total_steps=0"),
                                                   (20, 10, "warmup_steps=20 must be an integer in \\[0, total"),
                                                   (10, 10, "warmup_steps=10"), (2.0, 10, "warmup_steps=2.0")])
def test_warmup_cosine_refuses_a_schedule_that_cannot_run(warmup, total, message):
    opt = torch.optim.SGD([_param()], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=message):
        warmup_cosine(opt, warmup, total)


def test_public_names_are_documented_and_dir_is_clean():
    import betasched

    assert "annotations" not in dir(betasched) and "importlib" not in dir(betasched)
    assert set(betasched.__all__) <= set(dir(betasched))
    for name in ("MomentumScheduler", "problem_layers", "attribute", "warmup_cosine", "surgical_finetune"):
        assert (getattr(betasched, name).__doc__ or "").strip(), name
    assert "Example" in betasched.MomentumScheduler.__doc__


def test_constant_matched_rescales_lr_but_keeps_the_lr_schedule():
    def lrs(schedule):
        p = _param()
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        lr_sched = warmup_cosine(opt, 3, 10)
        mom = MomentumScheduler(opt, schedule, total_steps=10)
        out = []
        for _ in range(10):
            out.append((mom.get_last_nominal_lr()[0], opt.param_groups[0]["lr"]))
            _grad_step(opt, p, 1.0)
            lr_sched.step()
            mom.step()
        return out

    plain, matched = lrs("constant"), lrs("constant_matched")
    assert [n for n, _ in plain] == pytest.approx([n for n, _ in matched])
    for nominal, applied in matched:
        mu_beta = min(max(1 - 2 * nominal ** 0.5, 0), 0.99)
        assert applied / (1 - 0.9) == pytest.approx(nominal / (1 - mu_beta))


def test_state_dict_round_trip():
    opt = torch.optim.SGD([_param()], lr=0.1, momentum=0.9)
    a = MomentumScheduler(opt, "demon", total_steps=10)
    for _ in range(4):
        a.step()
    b = MomentumScheduler(torch.optim.SGD([_param()], lr=0.1, momentum=0.9), "demon", total_steps=10)
    b.load_state_dict(a.state_dict())
    a.step()
    b.step()
    assert a.get_last_momentum() == b.get_last_momentum()
    assert b.last_step == 5


def test_optimizer_without_momentum_is_rejected():
    # A TypeError (and a ValueError), as torch's own schedulers raise for a wrong optimizer.
    for exc in (ConfigError, TypeError, ValueError):
        with pytest.raises(exc, match="neither 'momentum' nor 'betas'"):
            MomentumScheduler(torch.optim.Adagrad([_param()], lr=0.1), "beta")
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        MomentumScheduler([_param()], "beta")


def test_bad_values_are_value_errors():
    opt = torch.optim.SGD([_param()], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="unknown schedule 'warp'"):
        MomentumScheduler(opt, "warp")
    with pytest.raises(ValueError, match="max_momentum=1.5"):
        MomentumScheduler(opt, "beta", max_momentum=1.5)
    with pytest.raises(ValueError, match="total_steps=0"):
        MomentumScheduler(opt, "demon", total_steps=0)
    with pytest.raises(TypeError, match="mu0='high'"):
        MomentumScheduler(opt, "constant", mu0="high")


def test_step_rules_need_total_steps():
    with pytest.raises(ConfigError, match="total_steps"):
        MomentumScheduler(torch.optim.SGD([_param()], lr=0.1, momentum=0.9), "demon")


def test_a_schedule_registered_at_run_time_drives_the_scheduler_and_its_options_are_checked(monkeypatch):
    import betasched
    from betasched import Option, Schedule
    from betasched.core.errors import ConfigError

    def halfway(lr, step, total_steps, lr_min, lr_max, mu0=0.9, **_):
        return mu0 if step < total_steps / 2 else mu0 / 2

    monkeypatch.setitem(betasched.SCHEDULE_REGISTRY, "halfway",
                        Schedule(halfway, {"mu0": Option("momentum")}, needs_total_steps=True))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.0)
    with pytest.raises(ConfigError, match="schedule 'halfway' needs total_steps > 0"):
        MomentumScheduler(opt, "halfway")
    with pytest.raises(ConfigError, match=r"schedule 'halfway': mu0=1.5 must be in \[0, 1\)"):
        MomentumScheduler(opt, "halfway", total_steps=4, mu0=1.5)
    sched = MomentumScheduler(opt, "halfway", total_steps=4, mu0=0.8)
    seen = [sched.get_last_momentum()[0]]
    for _ in range(3):
        sched.step()
        seen.append(sched.get_last_momentum()[0])
    assert seen == [0.8, 0.8, 0.4, 0.4] and opt.param_groups[0]["momentum"] == 0.4
