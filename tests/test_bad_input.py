"""Each bad input: a non-zero exit, one line naming the problem, and no new or changed output.

Most cases run the stage script in this process (runpy, as `python stages/x.py` would, with the
same argv, cwd and stderr), so that 70 cases take seconds; the cases that need a process of their
own (a server, a signal, another user) run as subprocesses. Every case asserts the exit code,
a single `error:` line, and that no file of the repo changed."""
import io
import os
import runpy
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import env_with_venv, make_repo, prepare_repo

TRAIN = ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "0"]
PREPARE = ["stages/prepare.py"]
COMPARE = ["stages/compare.py"]
ATTRIBUTE = ["stages/attribute.py"]
REPAIR = ["stages/repair.py"]
CHECK = ["stages/check.py"]
SCAN = ["stages/scan.py"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("bad") / "repo")
    prepare_repo(repo)
    return repo


def snapshot(repo):
    """Every file (mtime, size) and folder of the repo, but git's and Python's caches."""
    return {p.relative_to(repo): (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else "dir"
            for p in repo.rglob("*") if ".git" not in p.parts and "__pycache__" not in p.parts}


def run_inproc(repo, cmd, capfd, monkeypatch):
    """`python <cmd>` in this process: (exit code, stderr)."""
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    capfd.readouterr()
    module = cmd[1] if cmd[0] == "-m" else None
    monkeypatch.setattr(sys, "argv", [module or str(repo / cmd[0]), *cmd[(2 if module else 1):]])
    try:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(str(repo / cmd[0]), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capfd.readouterr().err


def assert_one_line(code, err, expected, exit_code=2):
    assert code == exit_code, (code, err[-2000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def edit_params(repo, edit):
    """Apply ``edit`` to params.yaml; returns the original text (restore it after the case)."""
    path = repo / "params.yaml"
    original = path.read_text()
    p = yaml.safe_load(original)
    edit(p)
    path.write_text(yaml.safe_dump(p))
    return original


def _set(path, value):
    def edit(p):
        node = p
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    return edit


def _drop(path):
    def edit(p):
        node = p
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        del node[last]
    return edit


CASES = [
    # names
    ("unknown schedule", _set("matrix.schedules", ["constant", "warp"]), TRAIN, "unknown schedule 'warp'"),
    ("unknown studied schedule", _set("schedule", "warp"), TRAIN, "unknown schedule 'warp'"),
    ("unknown optimizer", _set("matrix.optimizers", ["lion"]), TRAIN, "unknown optimizer 'lion'"),
    ("unknown preset", _set("preset", "huge"), TRAIN, "unknown preset 'huge'"),
    ("unknown precision", _set("train.precision", "fp8"), TRAIN, "unknown train.precision 'fp8'"),
    ("unknown repair precision", _set("repair.precision", "fp8"), CHECK, "unknown repair.precision 'fp8'"),
    ("unknown device", _set("train.device", "tpu"), TRAIN, "unknown train.device 'tpu'"),
    ("unknown data source", _set("data.source", "s3"), PREPARE, "unknown data.source 's3'"),
    ("unknown attribution method", _set("attribution.method", "shap"), ATTRIBUTE, "unknown attribution.method 'shap'"),
    ("unknown granularity", _set("attribution.granularity", "neuron"), ATTRIBUTE, "unknown attribution.granularity"),
    ("shell in a schedule name", _set("matrix.schedules", ["beta; touch pwned #"]), CHECK,
     "unknown schedule 'beta; touch pwned #'"),
    ("shell in an optimizer name", _set("matrix.optimizers", ["sgd$(touch pwned)"]), TRAIN,
     "unknown optimizer 'sgd$(touch pwned)'"),
    # numbers out of range
    ("lr zero", _set("optim.sgd.lr", 0), TRAIN, "optim.sgd.lr=0"),
    ("lr negative", _set("optim.adam.lr", -1e-3), TRAIN, "optim.adam.lr=-0.001"),
    ("lr infinite", _set("optim.sgd.lr", float("inf")), TRAIN, "optim.sgd.lr=inf must be a finite number"),
    ("lr a string", _set("optim.sgd.lr", "fast"), TRAIN, "optim.sgd.lr='fast' must be a number"),
    ("epochs zero", _set("train.epochs", 0), TRAIN, "train.epochs=0"),
    ("epochs fractional", _set("train.epochs", 2.5), TRAIN, "train.epochs=2.5 must be an integer"),
    ("batch zero", _set("train.batch_size", 0), TRAIN, "train.batch_size=0"),
    ("eval_every zero", _set("train.eval_every", 0), TRAIN, "train.eval_every=0"),
    ("warm-up as long as training", _set("train.warmup_epochs", 2), TRAIN, "train.warmup_epochs=2"),
    ("target fraction above 1", _set("targets.fractions", [0.5, 1.5]), CHECK, "targets.fractions entry=1.5"),
    ("no target fractions", _set("targets.fractions", []), CHECK, "targets.fractions=[] must be a non-empty list"),
    ("targets not increasing", _set("targets.values", [0.95, 0.9]), CHECK, "must be increasing"),
    ("unknown target rule", _set("targets.rule", "guess"), CHECK, "unknown targets.rule 'guess'"),
    ("pilot seed is a verdict seed", _set("targets.pilot_seeds", [0]), CHECK, "share [0]"),
    ("control also a schedule", _set("matrix.schedules", ["constant", "beta", "constant_matched"]), TRAIN,
     "is in matrix.schedules and matrix.controls"),
    ("stats min_seeds 1", _set("stats.min_seeds", 1), CHECK, "stats.min_seeds=1"),
    ("threads negative", _set("train.threads", -3), TRAIN, "train.threads=-3"),
    ("threads zero", _set("train.threads", 0), TRAIN, "train.threads=0"),
    ("checkpoint_every a word", _set("train.checkpoint_every", "often"), TRAIN,
     "train.checkpoint_every='often' must be an integer"),
    ("nproc zero", _set("train.nproc", 0), TRAIN, "train.nproc=0"),
    ("batch not divisible by ranks", _set("train.nproc", 5), TRAIN, "is not divisible by the 5 ranks"),
    ("width zero", _set("model.width", 0), TRAIN, "model.width=0"),
    ("max_momentum 1", _set("momentum.max_momentum", 1.0), TRAIN, "momentum.max_momentum=1.0"),
    ("bad hybrid switch", _set("momentum.hybrid", {"switch": 2}), TRAIN, "switch=2"),
    ("hybrid switch a word", _set("momentum.hybrid", {"switch": "half"}), TRAIN, "switch='half' must be a number"),
    ("unknown schedule option", _set("momentum.beta", {"mu0": 0.9}), TRAIN, "unknown key momentum.beta.mu0"),
    ("k zero", _set("attribution.k", 0), ATTRIBUTE, "attribution.k=0"),
    ("k all groups", _set("attribution.k", 7), ATTRIBUTE, "attribution.k=7"),
    ("attribution threads zero", _set("attribution.threads", 0), ATTRIBUTE, "attribution.threads=0"),
    ("repair zero steps", _set("repair.steps", 0), REPAIR, "repair.steps=0"),
    ("repair lr infinite", _set("repair.lr", float("inf")), REPAIR, "repair.lr=inf"),
    ("repair no random draws", _set("repair.n_random", 0), REPAIR, "repair.n_random=0"),
    ("repair negative weight", _set("repair.upweight_errors", -1.0), CHECK, "repair.upweight_errors=-1.0"),
    ("split seed negative", _set("data.split_seed", -1), PREPARE, "data.split_seed=-1"),
    ("n_val not a multiple of 10", _set("data.n_val", 15), PREPARE, "data.n_val=15 must be a multiple of 10"),
    # the scan and the lambda ablation
    ("unknown curvature source", _set("momentum.beta_curv.source", "lambda_min"), CHECK,
     "unknown momentum.beta_curv.source 'lambda_min'"),
    ("curvature refresh every 0 steps", _set("momentum.beta_curv.every", 0), CHECK, "momentum.beta_curv.every=0"),
    ("negative lambda", _set("momentum.beta.lam", -1.0), TRAIN, "lam=-1.0 must be a curvature > 0"),
    ("scan batch larger than the data", _set("scan.batch_size", 100_000), SCAN, "scan.batch_size=100000 exceeds"),
    ("scan band not an interval", _set("scan.band", [1.5, 0.5]), CHECK, "must be an interval [low, high]"),
    ("scan band a number", _set("scan.band", 1.0), CHECK, "scan.band=1.0 must be an interval"),
    ("ablation lists lambda 1", _set("ablation.lams", [0.3, 1]), CHECK, "ablation.lams lists 1"),
    # the matrix
    ("negative seed", _set("matrix.seeds", [-1]), TRAIN, "matrix.seeds entry=-1"),
    ("seed a word", _set("matrix.seeds", ["abc"]), TRAIN, "matrix.seeds entry='abc' must be an integer"),
    ("duplicate seed", _set("matrix.seeds", [0, 0]), TRAIN, "matrix.seeds lists 0 twice"),
    ("duplicate schedule", _set("matrix.schedules", ["beta", "beta", "constant"]), TRAIN,
     "matrix.schedules lists 'beta' twice"),
    ("duplicate optimizer", _set("matrix.optimizers", ["sgd", "adam", "sgd"]), CHECK, "matrix.optimizers lists 'sgd' twice"),
    ("no schedules", _set("matrix.schedules", []), TRAIN, "matrix.schedules=[] must be a non-empty list"),
    ("studied schedule not trained", lambda p: p["matrix"].update(schedules=["constant"]), ATTRIBUTE,
     "schedule='beta' was not trained"),
    # structure and typos
    ("no model section", _drop("model"), TRAIN, "params section model is missing"),
    ("no data section", _drop("data"), TRAIN, "params section data is missing"),
    ("no attribution section", _drop("attribution"), TRAIN, "params section attribution is missing"),
    ("no optim.sgd", _drop("optim.sgd"), TRAIN, "params section optim.sgd is missing"),
    ("no train.epochs", _drop("train.epochs"), TRAIN, "params.yaml lacks train.epochs"),
    ("no targets section", _drop("targets"), TRAIN, "params section targets is missing"),
    ("a section that is a scalar", _set("train", 5), TRAIN, "params section train is 5, not a mapping"),
    ("typo in a section", lambda p: p.update(trian={"epochs": 3}), TRAIN, "unknown key trian (did you mean train?)"),
    ("typo in a key", _set("train.epoch", 3), TRAIN, "unknown key train.epoch (did you mean train.epochs?)"),
    ("typo in an optimizer key", _set("optim.sgd.learning_rate", 0.1), TRAIN, "unknown key optim.sgd.learning_rate"),
    # data
    ("cifar missing offline", lambda p: p["data"].update(source="cifar10", raw_dir="nowhere"),
     PREPARE, "cifar-10-python.tar.gz"),
    ("corrupt jpeg archive", lambda p: p["data"].update(source="imagefolder", archive="params.yaml"),
     PREPARE, "corrupt or truncated"),
]


@pytest.mark.parametrize("name,edit,cmd,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_param(repo, name, edit, cmd, expected, capfd, monkeypatch):
    before = snapshot(repo)
    original = edit_params(repo, edit)
    try:
        code, err = run_inproc(repo, cmd, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    assert_one_line(code, err, expected)
    assert before == after
    assert not (repo / "pwned").exists()


ARG_CASES = [
    ("optimizer argument", ["stages/train.py", "--optimizer", "lion", "--schedule", "beta", "--seed", "0"],
     "unknown optimizer 'lion'"),
    ("schedule argument", ["stages/train.py", "--optimizer", "sgd", "--schedule", "warp", "--seed", "0"],
     "unknown schedule 'warp'"),
    ("seed argument negative", ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "-2"],
     "seed=-2"),
    ("seed argument a word", ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "abc"],
     "argument --seed: invalid int value: 'abc'"),
    ("missing argument", ["stages/train.py", "--optimizer", "sgd"], "the following arguments are required"),
    ("bad --jobs", ["-m", "betasched.pipeline.parallel", "--jobs", "zero"], "--jobs='zero' must be"),
    ("unknown preset at compose time", ["-m", "betasched.pipeline.compose", "preset=huge"], "preset/huge"),
]


@pytest.mark.parametrize("name,cmd,expected", ARG_CASES, ids=[c[0] for c in ARG_CASES])
def test_bad_argument(repo, name, cmd, expected, capfd, monkeypatch):
    before = snapshot(repo)
    code, err = run_inproc(repo, cmd, capfd, monkeypatch)
    assert_one_line(code, err, expected)
    assert snapshot(repo) == before


def test_yaml_syntax_error_names_the_line(repo, capfd, monkeypatch):
    original = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(original.replace("train:\n", "train:\n  epochs: [3\n", 1))
    try:
        code, err = run_inproc(repo, TRAIN, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, "params.yaml is not valid YAML at line")


def _case_files(repo, capfd, monkeypatch, setup, cmd, expected, undo):
    """Break a file with ``setup``, run ``cmd``, restore with ``undo``."""
    setup()
    before = snapshot(repo)
    try:
        code, err = run_inproc(repo, cmd, capfd, monkeypatch)
        after = snapshot(repo)
    finally:
        undo()
    assert_one_line(code, err, expected)
    assert before == after


def test_tampered_prepared_data(repo, capfd, monkeypatch):
    data = repo / "data/prepared/data.pt"
    original = data.read_bytes()
    _case_files(repo, capfd, monkeypatch, lambda: data.write_bytes(original[:-16] + bytes(16)), TRAIN,
                "does not match its manifest's sha256", lambda: data.write_bytes(original))


def _checkpoint_path(repo, monkeypatch):
    import json as _json

    from betasched.pipeline.params import load_params, load_targets, run_config
    from betasched.pipeline.runs import run_key

    monkeypatch.chdir(repo)  # the key hashes the repo's own stage code
    params = load_params(repo / "params.yaml")
    sha = _json.loads((repo / "data/prepared/manifest.json").read_text())["data_sha256"]
    cfg = run_config(params, "sgd", "beta", 0, targets=load_targets())
    return repo / ".checkpoints" / f"sgd-beta-s0-{run_key(cfg, sha)}.pt"


def test_corrupt_checkpoint(repo, capfd, monkeypatch):
    ckpt = _checkpoint_path(repo, monkeypatch)
    ckpt.parent.mkdir(exist_ok=True)
    _case_files(repo, capfd, monkeypatch, lambda: ckpt.write_bytes(b"not a checkpoint"), TRAIN,
                "cannot be loaded", ckpt.unlink)


def test_checkpoint_without_model_key(repo, capfd, monkeypatch):
    import torch

    ckpt = _checkpoint_path(repo, monkeypatch)
    ckpt.parent.mkdir(exist_ok=True)
    _case_files(repo, capfd, monkeypatch, lambda: torch.save({"step": 3}, ckpt), TRAIN,
                "lacks model, optimizer", ckpt.unlink)


def test_corrupt_model_file(repo, capfd, monkeypatch):
    run = repo / "runs/sgd-beta-s0"

    def setup():
        run.mkdir(parents=True)
        (run / "model.pt").write_bytes(b"\x80\x02garbage")

    _case_files(repo, capfd, monkeypatch, setup, ATTRIBUTE, "model.pt cannot be loaded",
                lambda: shutil.rmtree(repo / "runs"))


def test_metrics_is_a_file(repo, capfd, monkeypatch):
    metrics = repo / "metrics"
    shutil.move(metrics, repo / "metrics.bak")
    _case_files(repo, capfd, monkeypatch, lambda: metrics.write_text("not a folder"), COMPARE,
                "metrics is a file, where the folder metrics must be",
                lambda: (metrics.unlink(), shutil.move(repo / "metrics.bak", metrics)))


@pytest.mark.parametrize("content,expected", [(b"", "is empty"), (b"garbage" * 10, "not an SQLite database")],
                         ids=["truncated", "garbage"])
def test_broken_mlflow_store_is_not_replaced(repo, capfd, monkeypatch, content, expected):
    db = repo / "mlflow.db"
    original = db.read_bytes()
    _case_files(repo, capfd, monkeypatch, lambda: db.write_bytes(content), ATTRIBUTE, expected,
                lambda: db.write_bytes(original))
    assert db.read_bytes() == original


def test_dangling_data_link(repo, capfd, monkeypatch):
    raw = repo / "data/raw"
    shutil.move(raw, repo / "raw.bak")
    original = edit_params(repo, _set("data.source", "auto"))

    def undo():
        raw.unlink()
        shutil.move(repo / "raw.bak", raw)
        (repo / "params.yaml").write_text(original)

    _case_files(repo, capfd, monkeypatch, lambda: raw.symlink_to(repo / "no-such-folder"), PREPARE,
                "data/raw is a broken link", undo)


def _png(size):
    """A 1-bit black image: a 10000 x 10000 one is a 12 KB PNG, and 300 MB once decoded to RGB."""
    buf = io.BytesIO()
    Image.new("1", size).save(buf, "PNG")
    return buf.getvalue()


def _tarball(path, members, mode="w:gz"):
    """members: (name, bytes), or (name, size) for that many zero bytes streamed from /dev/zero."""
    with tarfile.open(path, mode) as tar, open("/dev/zero", "rb") as zero:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = blob if isinstance(blob, int) else len(blob)
            tar.addfile(info, zero if isinstance(blob, int) else io.BytesIO(blob))
    return path


@pytest.mark.parametrize("name,members,expected", [
    ("huge image", [("train/airplane/0000.png", (10000, 10000))], "is 10000x10000, not CIFAR's 32x32"),
    ("decompression bomb", [("train/airplane/0000.png", (15000, 15000))], "not a readable 32x32 image"),
    ("oversized member", [("train/airplane/0000.png", b"\0" * 300_000)], "is 300,000 bytes"),
], ids=["10000^2 png", "15000^2 png", "300 KB member"])
def test_hostile_archives_are_refused_before_decoding(repo, capfd, monkeypatch, tmp_path, name, members, expected):
    import resource

    from betasched.training.archive import CLASSES

    hostile = dict((m, _png(b) if isinstance(b, tuple) else b) for m, b in members)
    good = _png((32, 32))
    blobs = [(name, hostile.get(name, good)) for name in
             [f"train/{c}/{i:04d}.png" for c in CLASSES for i in range(3)] + [f"test/{c}/0000.png" for c in CLASSES]]
    archive = _tarball(tmp_path / "hostile.tar.gz", blobs)
    assert archive.stat().st_size < 2_000_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    original = edit_params(repo, lambda p: p["data"].update(source="imagefolder", archive=str(archive), n_train=None,
                                                             n_val=10, n_test=10))
    before = snapshot(repo)
    try:
        code, err = run_inproc(repo, PREPARE, capfd, monkeypatch)
    finally:
        (repo / "params.yaml").write_text(original)
    assert_one_line(code, err, expected)
    after = snapshot(repo)
    after[Path("params.yaml")] = before[Path("params.yaml")]
    assert before == after
    # Peak memory grew by less than 200 MB (a 10000^2 RGB image decoded is 300 MB).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000


def test_a_large_non_image_member_is_not_read(tmp_path):
    """A 300 MB member beside the images is skipped unread: the reader's peak memory is that of the
    same archive with a 1 KB member (reading it whole, as before, added 1.7 GB for 1 GiB)."""
    from betasched.training.archive import CLASSES

    png = _png((32, 32))
    members = [(f"{s}/{c}/{i:04d}.png", png) for s in ("train", "test") for c in CLASSES for i in range(2)]
    code = ("import resource, sys; from betasched.training.archive import read_images; "
            "files = read_images(__import__('pathlib').Path(sys.argv[1])); "
            "print(len(files), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {}
    for size in (1_000, 300_000_000):
        archive = _tarball(tmp_path / f"member-{size}.tar.gz", [*members, ("train/README.bin", size)])
        out = subprocess.run([sys.executable, "-c", code, str(archive)], capture_output=True, text=True,
                             check=True, env=env_with_venv())
        count, peaks[size] = map(int, out.stdout.split())
        assert count == 40
    assert peaks[300_000_000] - peaks[1_000] < 50_000, peaks  # kB


def test_tampered_cifar_batches_say_so(tmp_path):
    """Tampered official batches: a failed integrity check, not 'not found and download failed'."""
    from betasched.core.errors import DataError
    from betasched.training.data import prepare

    batches = tmp_path / "raw" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (batches / name).write_bytes(b"tampered")
    cfg = dict(source="auto", archive=None, n_train=None, n_val=20, n_test=20, split_seed=0,
               raw_dir=str(tmp_path / "raw"))
    with pytest.raises(DataError, match="fail torchvision's md5 check"):
        prepare(cfg, tmp_path / "prepared", download=True)
    assert not (tmp_path / "prepared").exists()


def test_unreachable_tracking_server(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = snapshot(repo)
    out = subprocess.run([sys.executable, *PREPARE], cwd=repo, capture_output=True, text=True, timeout=60,
                         env=env_with_venv(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}"))
    assert_one_line(out.returncode, out.stderr, "is unreachable")
    assert snapshot(repo) == before


def test_make_ui_on_a_taken_port(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "betasched.pipeline.ui", "--port", str(port)], cwd=repo,
                             capture_output=True, text=True, timeout=60, env=env_with_venv())
    assert_one_line(out.returncode, out.stderr, f"127.0.0.1:{port} is taken")


def _as_unprivileged(cmd):
    """Root ignores read-only modes: drop the capabilities that let it (root keeps its own files'
    owner bits, so 0555 / 0444 bind it as they bind any user)."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv")
@pytest.mark.parametrize("target,cmd,expected", [
    ("runs", TRAIN, "runs is not writable"),
    ("mlflow.db", PREPARE, "is read-only"),
], ids=["read-only runs", "read-only mlflow store"])
def test_read_only_outputs(repo, target, cmd, expected):
    path = repo / target
    path.mkdir(exist_ok=True) if target == "runs" else None
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(repo)
    try:
        out = subprocess.run(_as_unprivileged([sys.executable, *cmd]), cwd=repo, capture_output=True, text=True,
                             timeout=120, env=env_with_venv())
        after = snapshot(repo)
    finally:
        path.chmod(mode)
        if target == "runs":
            path.rmdir()
    assert_one_line(out.returncode, out.stderr, expected)
    assert before == after


def test_shell_injection_never_runs_through_dvc(repo, tmp_path):
    """A schedule name with shell code, given to plain `dvc repro`: the check stage stops it first."""
    pwned = tmp_path / "pwned"
    original = edit_params(repo, _set("matrix.schedules", [f"beta; touch {pwned} #", "constant"]))
    try:
        out = subprocess.run(["dvc", "repro"], cwd=repo, env=env_with_venv(), capture_output=True, text=True,
                             timeout=300)
    finally:
        (repo / "params.yaml").write_text(original)
    assert out.returncode != 0
    assert "unknown schedule 'beta; touch" in out.stderr + out.stdout
    assert not pwned.exists()


def test_cases_cover_the_catalogue():
    assert len(CASES) + len(ARG_CASES) >= 60
