"""Where and how a run computes: the device, the precision, the thread count, and the CPU's
instruction set (the CPU class, which decides bf16's last bits)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from ..core import checks
from ..core.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")


def check_device(name) -> str:
    if not isinstance(name, str) or not (name in ("auto", "cpu", "cuda") or
                                         (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"unknown train.device {checks.show(name)}: choose auto, cpu, cuda or cuda:N")
    return name


def pick_device(name: str = "auto") -> torch.device:
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is visible: use auto or cpu")
    return torch.device(name)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        return set(Path(cpuinfo).read_text().split())
    except OSError:
        return set()


# oneDNN's ISA levels, lowest first (ONEDNN_MAX_CPU_ISA caps the kernels it dispatches to).
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
               "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL")
_AVX512 = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
# train.cpu_isa -> (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY, the CPU flags it needs). oneDNN's cap
# alone leaves ATen's own vectorised kernels (reductions, BatchNorm, the optimizer) on the CPU's
# widest set, so a pin sets both.
CPU_ISAS = {
    "auto": None,  # what the CPU has (and whatever the environment already caps): recorded, not pinned
    "avx2": ("AVX2", "avx2", ("avx2", "fma")),
    "avx512_core": ("AVX512_CORE", "avx512", _AVX512),
    "avx512_core_bf16": ("AVX512_CORE_BF16", "avx512", (*_AVX512, "avx512_bf16")),
    "avx512_core_amx": ("AVX512_CORE_AMX", "avx512", (*_AVX512, "avx512_bf16", "amx_bf16", "amx_tile")),
}


def onednn_isa_limit() -> str:
    """The oneDNN ISA cap in force: ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA), else 'ALL'."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (Linux); False where they cannot be read."""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def onednn_runs_bf16_natively(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """The CPU has bf16 instructions and oneDNN is not capped below them (a cap such as AVX2
    makes it emulate bf16: other bits, and slower)."""
    limit = onednn_isa_limit()
    capped = limit in ONEDNN_ISAS and ONEDNN_ISAS.index(limit) < ONEDNN_ISAS.index("AVX512_CORE_BF16")
    return cpu_has_native_bf16(cpuinfo) and not capped


def onednn_below_avx512(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """oneDNN dispatches AVX2-level kernels: the CPU lacks AVX-512, or a cap keeps it below."""
    limit = onednn_isa_limit()
    capped = limit in ONEDNN_ISAS and ONEDNN_ISAS.index(limit) < ONEDNN_ISAS.index("AVX512_CORE")
    return capped or not set(_AVX512) <= cpu_flags(cpuinfo)


def channels_last_unsafe(width: int, device: torch.device | str = "cpu") -> bool:
    """torch 2.14.1's oneDNN AVX2 kernels crash (a segfault or abort in the first backward pass) or
    spin for good (jit_avx2_1x1_convolution_bwd_weights, seen in the repair stage) on ResNet-18
    below width 8 in channels_last: True where this process would dispatch to them (a CPU without
    AVX-512, or ONEDNN_MAX_CPU_ISA below it). Widths 8 and up ran."""
    return torch.device(device).type == "cpu" and width < 8 and onednn_below_avx512()


def pin_cpu_isa(name: str, cpuinfo: str | Path = "/proc/cpuinfo") -> None:
    """Cap oneDNN and ATen at one instruction set (``cpu_isa``), so that bf16 results reproduce on
    every CPU that has it. Call it before torch computes anything: both libraries read their cap
    once, at their first kernel. 'auto' pins nothing."""
    from ..core import checks

    checks.choice(name, "cpu_isa", tuple(CPU_ISAS))
    if CPU_ISAS[name] is None:
        return
    onednn, aten, needs = CPU_ISAS[name]
    missing = [f for f in needs if f not in cpu_flags(cpuinfo)]
    if missing:
        raise ConfigError(f"cpu_isa={name} needs CPU flags {', '.join(missing)}, which this CPU lacks: "
                          f"pin a lower set ({', '.join(k for k in CPU_ISAS if k != name)}) or run where it has them")
    os.environ["ONEDNN_MAX_CPU_ISA"], os.environ["ATEN_CPU_CAPABILITY"] = onednn, aten
    if torch.backends.cpu.get_cpu_capability() != aten.upper():
        raise ConfigError(f"cpu_isa={name} came after torch had already computed on this process's CPU "
                          f"({torch.backends.cpu.get_cpu_capability()}): pin it first, or set "
                          f"ONEDNN_MAX_CPU_ISA={onednn} ATEN_CPU_CAPABILITY={aten} in the environment")


def cpu_class(precision: str, device: torch.device) -> dict:
    """The CPU class of a run, which decides bf16's last bits: ATen's kernel set, the oneDNN cap in
    force, and whether bf16 ran natively (rather than emulated, or not at all)."""
    native = (torch.cuda.is_bf16_supported() if device.type == "cuda" else onednn_runs_bf16_natively())
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "onednn_isa_limit": onednn_isa_limit(),
            "bf16_native": precision == "bf16" and native}


def resolve_precision(name: str, device: torch.device, what: str = "train.precision") -> str:
    """auto: bf16 autocast where the hardware computes bf16 natively (CUDA with bf16; a CPU with
    AVX512-BF16/AMX, where it measured 1.7x at width 16 and 1.9x at width 64), else fp32."""
    checks.choice(name, what, PRECISIONS)
    if name != "auto":
        return name
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    return "bf16" if native else "fp32"


def autocast(device, precision: str | None = None):
    """bf16 autocast when precision is bf16 (None: bf16 on CUDA, fp32 on a CPU)."""
    device = torch.device(device)
    if precision == "bf16" or (precision is None and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_threads(threads: int) -> None:
    """The intra-op thread count changes CPU results at rounding level, so it is a param
    (train.threads), set the same way on every launch path."""
    torch.set_num_threads(checks.integer(threads, "train.threads"))
