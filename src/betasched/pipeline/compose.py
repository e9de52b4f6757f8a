"""Compose params.yaml from conf/ (as `dvc exp run -S ...` does), and check every section at once.

    python -m betasched.pipeline.compose preset=smoke     # write params.yaml, checked; smoke becomes
                                                          # conf/config.yaml's default preset
    python -m betasched.pipeline.compose --check          # check params.yaml as it is

`make repro` runs the check before DVC starts, so a bad value in a late stage's section fails in
a second, not after the trainings; each stage still checks what it uses."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from ..core.checks import escape, show
from ..core.errors import ConfigError
from ..core.files import atomic_path
from .config import Params
from .params import load_params, presets, read_yaml, repo_root, validate
from .sections import attribution_settings, check_scan, target_rule, tune_spec, verdict_rules
from .treat import repair_budget


def check_all(params: Params) -> None:
    """Every section at once. load_params checked each section's own fields and every trained arm's
    RunConfig; here, the library objects that the later stages build from theirs."""
    target_rule(params)
    tune_spec(params)
    verdict_rules(params)
    attribution_settings(params)
    check_scan(params)
    repair_budget(params, params.matrix.seeds[0])


def compose_params(overrides: list[str] = (), root: str | Path | None = None) -> Path:
    """Write params.yaml composed from conf/ with Hydra's public API (as DVC does), resolved."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    root = Path(root or repo_root()).resolve()
    out = root / "params.yaml"
    with atomic_path(out) as tmp:
        try:
            with initialize_config_dir(str(root / "conf"), version_base=None):
                cfg = compose(config_name="config", overrides=list(overrides))
            OmegaConf.resolve(cfg)
        except Exception as exc:  # Hydra's errors name the bad override or the missing preset
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"cannot compose params from conf/ with [{', '.join(map(show, overrides))}]: "
                              f"{escape(first, 120)}") from exc
        tmp.write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
        check_all(validate(yaml.safe_load(tmp.read_text()), root))
        record_preset(overrides, root)
    return out


# conf/config.yaml's defaults entry of the preset group: `  - preset: laptop`
PRESET_DEFAULT = re.compile(r"^(\s*-\s*preset:[ \t]*)([A-Za-z0-9_.-]+)", re.M)


def record_preset(overrides, root: Path) -> None:
    """`make params PRESET=x` (the override preset=x) makes x conf/config.yaml's default preset:
    `dvc exp run -S schedule=hybrid` recomposes params.yaml from conf/ with its own overrides only,
    and would otherwise switch back to the default preset without a word. Says so when it changes."""
    chosen = [o.split("=", 1)[1].strip("'\"") for o in overrides if o.startswith("preset=")]
    if not chosen or chosen[-1] not in presets(root):
        return
    cfg = root / "conf" / "config.yaml"
    text = cfg.read_text()
    match = PRESET_DEFAULT.search(text)
    if match is None or match.group(2) == chosen[-1]:
        return
    with atomic_path(cfg) as tmp:
        tmp.write_text(text[:match.start(2)] + chosen[-1] + text[match.end(2):], encoding="utf-8")
    print(f"conf/config.yaml: default preset {match.group(2)} -> {chosen[-1]}, so that `dvc exp run` (which "
          f"recomposes params.yaml from conf/) keeps it; `make params PRESET={match.group(2)}` switches back")


def compose_plain(preset: str, root: str | Path | None = None) -> dict:
    """The params of a preset without Hydra (the GPU machine has none): conf/config.yaml, then
    the preset's own defaults chain, merged key by key as Hydra's composition does here."""
    conf = Path(root or repo_root()) / "conf"

    def load(name: str) -> dict:
        path = conf / "preset" / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {name!r}: conf/preset/{name}.yaml does not exist")
        tree = read_yaml(path) or {}
        merged: dict = {}
        for parent in [d for d in tree.pop("defaults", []) if d != "_self_"]:
            merged = merge(merged, load(parent))
        return merge(merged, tree)

    base = read_yaml(conf / "config.yaml")
    base.pop("defaults", None)
    return merge(base, load(preset))


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main(argv: list[str]) -> None:
    if argv == ["--check"]:
        check_all(load_params())
    else:
        compose_params(argv)


if __name__ == "__main__":
    from .cli import one_line_errors

    one_line_errors(main)(sys.argv[1:])
