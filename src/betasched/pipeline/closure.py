"""The files a stage script runs: its import closure within the betasched package.

DVC re-runs a stage only when a listed dependency changes, so each stage's deps must cover this
closure (tests/pipeline/test_deps.py checks dvc.yaml against it), and a resumable checkpoint must be keyed
by it, so that a run never resumes into code it was not started with."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "betasched"


def _module_file(src: Path, dotted: str) -> Path | None:
    base = src.joinpath(*dotted.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _dotted(src: Path, path: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(src: Path, path: Path) -> set[str]:
    """Dotted names of the betasched modules that ``path`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), str(path))
    here = _dotted(src, path) if path.is_relative_to(src) else ""
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import submodule`
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def import_closure(script: str | Path, src: str | Path) -> list[Path]:
    """``script`` and every betasched file it imports, directly or not, with each package's
    __init__.py (Python runs it on the way in). ``src``: the folder holding betasched/."""
    src, script = Path(src).resolve(), Path(script).resolve()
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted in _imports(src, path):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # the packages on the way, then the module
                f = _module_file(src, ".".join(parts[:i]))
                if f is not None and f not in seen:
                    todo.append(f)
    return sorted(seen)


def stage_code(script: str | Path, root: str | Path) -> list[str]:
    """The closure as dvc.yaml lists it: paths relative to the repo root, the script first."""
    root = Path(root).resolve()
    files = import_closure(Path(root) / script, root / "src")
    rel = [str(f.relative_to(root)) for f in files]
    return [str(script)] + sorted(r for r in rel if r != str(script))


def check_stage_deps(dvc_yaml: str | Path, root: str | Path) -> dict[str, dict[str, list[str]]]:
    """Per stage of dvc.yaml: the Python files its script runs but its deps miss ('missing'), and
    the Python files its deps list but its script never runs ('extra'). Empty when exact."""
    import yaml

    root = Path(root).resolve()
    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        script = next(w for w in stage["cmd"].split() if w.endswith(".py"))
        deps = {d for d in stage.get("deps", []) if d.endswith(".py")}
        code = set(stage_code(script, root))
        missing, extra = sorted(code - deps), sorted(deps - code)
        if missing or extra:
            out[name] = {"missing": missing, "extra": extra}
    return out


def write_stage_deps(dvc_yaml: str | Path, root: str | Path) -> list[str]:
    """Rewrite the src/betasched deps of every stage in dvc.yaml to its closure, in place; the other
    lines (data deps, comments, params, outs) stay as they are. Returns the stages changed."""
    import yaml

    root, path = Path(root).resolve(), Path(dvc_yaml)
    stages = yaml.safe_load(path.read_text())["stages"]
    lines, out, stage, changed = path.read_text().splitlines(), [], None, []
    for line in lines:
        head = line.split("#")[0].rstrip()
        if line.startswith("  ") and not line.startswith("   ") and head.endswith(":"):
            stage = head.strip()[:-1]
        if stage in stages and line.startswith("      - src/betasched/") and line.endswith(".py"):
            if not (out and out[-1].startswith("      - src/betasched/")):  # the first line of the block
                script = next(w for w in stages[stage]["cmd"].split() if w.endswith(".py"))
                new = [f"      - {c}" for c in stage_code(script, root)[1:]]
                old = [d for d in stages[stage]["deps"] if d.startswith("src/betasched/")]
                if [n[8:] for n in new] != old:
                    changed.append(stage)
                out += new
            continue
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return changed


if __name__ == "__main__":  # --check: compare dvc.yaml with the closures; --write: rewrite them
    import sys

    if sys.argv[1:] == ["--write"]:
        print("rewrote the code deps of:", ", ".join(write_stage_deps("dvc.yaml", Path.cwd())) or "none")
    elif sys.argv[1:] == ["--check"]:
        problems = check_stage_deps("dvc.yaml", Path.cwd())
        for stage, p in problems.items():
            print(f"{stage}: missing {p['missing']}, extra {p['extra']}")
        sys.exit(1 if problems else 0)
    else:
        for script in sys.argv[1:]:
            print(f"# {script}")
            print("\n".join(f"      - {p}" for p in stage_code(script, Path.cwd())))
