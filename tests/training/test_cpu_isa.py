"""The CPU class: train.cpu_isa pins oneDNN and ATen to one instruction set, so that a bf16 run's
bytes equal those of a process started with that cap in its environment; a run records the class
it ran on; bf16 counts as native only where the cap allows it."""
import json
import os
import subprocess
import sys

import pytest
import torch

from betasched.core.errors import ConfigError
from betasched.training import device

pytestmark = pytest.mark.pipeline  # trains in subprocesses under each oneDNN cap: `make test-fast` leaves it out

# One bf16 run of the engine on tiny synthetic data, in a fresh process: the model's md5 and the
# recorded CPU class. The pin (argv[1]) comes first, as in the stages (train() checks it again).
SCRIPT = r"""
import hashlib, json, sys
import torch
from betasched.training.device import pin_cpu_isa
pin_cpu_isa(sys.argv[1])
from betasched.training.engine import RunConfig, train

g = torch.Generator().manual_seed(0)
data = {"x_train": torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g),
        "y_train": torch.randint(0, 10, (64,), generator=g),
        "x_test": torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=g),
        "y_test": torch.randint(0, 10, (32,), generator=g)}
cfg = RunConfig(optimizer="sgd", schedule="beta", seed=0, epochs=1, batch_size=16, lr=0.05, eval_every=2,
                targets=(0.99,), width=4, device="cpu", channels_last=False, precision="bf16",
                cpu_isa=sys.argv[1], progress=False)
res = train(cfg, data)
blob = b"".join(v.float().numpy().tobytes() for v in res.model.state_dict().values())
print(json.dumps({"md5": hashlib.md5(blob).hexdigest(), **res.summary(cfg).to_json()}))
"""


def _train(cpu_isa, precision="bf16", **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    # no channels_last: at width 4 it crashes oneDNN's AVX2 kernels (see the last test)
    script = SCRIPT.replace('precision="bf16"', f'precision="{precision}"')
    out = subprocess.run([sys.executable, "-c", script, cpu_isa], env={**clean, **env}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_pin_gives_the_bytes_of_that_cap_set_in_the_environment(precision):
    """fp32 too: ResNet-18's fp32 training gave other bytes under oneDNN's AVX2 and AVX-512 kernels
    (measured here), so the pin is not only for bf16."""
    if not {"avx2", "fma"} <= device.cpu_flags():
        pytest.skip("this CPU has no AVX2")
    pinned = _train("avx2", precision=precision)
    from_env = _train("auto", precision=precision, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    assert pinned["md5"] == from_env["md5"]
    for run in (pinned, from_env):
        assert (run["cpu_capability"], run["onednn_isa_limit"], run["bf16_native"]) == ("AVX2", "AVX2", False)
        assert run["precision"] == precision


def test_an_unpinned_run_records_the_class_it_ran_on():
    run = _train("auto")  # no cap in its environment
    assert run["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert run["onednn_isa_limit"] == "ALL" and run["bf16_native"] == device.cpu_has_native_bf16()
    if {"avx2", "fma"} <= device.cpu_flags():
        capped = _train("auto", ONEDNN_MAX_CPU_ISA="AVX2")  # a cap from the environment is recorded too
        assert (capped["onednn_isa_limit"], capped["bf16_native"]) == ("AVX2", False)


def test_a_pin_after_torch_computed_is_refused():
    """ATen reads its cap at its first kernel: a later pin would be silently ignored."""
    script = ("import torch; torch.ones(8).sum()\n"
              "from betasched.training.device import pin_cpu_isa\n"
              "try:\n    pin_cpu_isa('avx2')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        pytest.skip("ATen already runs AVX2 kernels here: a late pin changes nothing")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"})
    assert out.stdout.startswith("ConfigError cpu_isa=avx2 came after torch had already computed"), out


def test_a_pin_the_cpu_lacks_is_refused(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags : fpu sse2 avx avx2 fma\n")
    with pytest.raises(ConfigError, match="cpu_isa=avx512_core_amx needs CPU flags avx512f.*amx_tile"):
        device.pin_cpu_isa("avx512_core_amx", cpuinfo)
    with pytest.raises(ConfigError, match="unknown cpu_isa 'sse9'"):
        device.pin_cpu_isa("sse9", cpuinfo)
    device.pin_cpu_isa("auto", cpuinfo)  # pins nothing
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ or os.environ["ONEDNN_MAX_CPU_ISA"] != "AVX512_CORE_AMX"


@pytest.mark.parametrize("cap,native", [(None, True), ("AVX2", False), ("avx512_core", False),
                                        ("AVX512_CORE_BF16", True), ("AVX512_CORE_AMX", True)])
def test_bf16_is_native_only_where_the_cap_allows(tmp_path, monkeypatch, cap, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags : avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16\n")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert device.onednn_runs_bf16_natively(cpuinfo) is native
    assert device.cpu_has_native_bf16(cpuinfo)  # the flags: precision auto stays bf16 (a pin moves the ISA only)
    assert device.onednn_below_avx512(cpuinfo) is (cap in ("AVX2",))


def test_channels_last_at_a_tiny_width_is_refused_where_onednn_would_crash(monkeypatch):
    """torch 2.14.1's oneDNN AVX2 kernels segfault, abort or spin for good in ResNet-18's backward
    at widths below 8 in channels_last: one line naming the fix instead of a core dump or a hang."""
    from betasched.training.engine import RunConfig, train

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    data = {"x_train": torch.zeros(32, 3, 32, 32, dtype=torch.uint8), "y_train": torch.zeros(32, dtype=torch.long),
            "x_test": torch.zeros(8, 3, 32, 32, dtype=torch.uint8), "y_test": torch.zeros(8, dtype=torch.long)}
    for precision in ("bf16", "fp32"):
        cfg = RunConfig(optimizer="sgd", schedule="beta", seed=0, epochs=1, batch_size=16, lr=0.05, eval_every=2,
                        targets=(0.99,), width=4, device="cpu", channels_last=True, precision=precision,
                        progress=False)
        with pytest.raises(ConfigError, match="model.width=4 with train.channels_last crashes or hangs oneDNN's AVX2"):
            train(cfg, data)
    assert device.channels_last_unsafe(4) and not device.channels_last_unsafe(8)
    assert not device.channels_last_unsafe(4, "cuda")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert device.channels_last_unsafe(4) is not (set(device._AVX512) <= device.cpu_flags())
