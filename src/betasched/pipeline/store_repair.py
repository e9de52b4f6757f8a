"""`make mlflow-relink`: re-point a moved SQLite store's artifacts at its own mlartifacts/.

A store whose repo moved (or was copied, the original deleted) keeps absolute artifact paths that
point where nothing is any more, and stages refuse it (store.check_not_moved). MLflow has no API to
change an experiment's, a run's or a logged model's artifact location, so this command writes
MLflow's tables, and only on request: after checking that the store's schema revision is the one
the installed MLflow writes (its alembic head) and that every column it updates is there. A run or
model whose artifacts are where its record says (another clone's, sharing this store) is not touched.
"""
from __future__ import annotations

import os
import sqlite3

from ..core.errors import TrackingError
from .cli import ArgumentParser, one_line_errors
from .store import EXPERIMENT, artifact_home, local_path, tracking_uri
from .store_file import LOCK_WAIT_S, check_store, sqlite_path

# table -> (key column, artifact column): every row under the old location is considered
TABLES = {"runs": ("run_uuid", "artifact_uri"), "logged_models": ("model_id", "artifact_location")}


def installed_schema() -> str:
    """The schema revision the installed MLflow creates and expects (its migrations' head)."""
    import mlflow
    from alembic.script import ScriptDirectory

    return ScriptDirectory(os.path.join(os.path.dirname(mlflow.__file__), "store", "db_migrations")).get_current_head()


def check_schema(db: sqlite3.Connection, path) -> None:
    import mlflow

    (found,), = db.execute("SELECT version_num FROM alembic_version").fetchall() or [("none",)]
    head = installed_schema()
    if found != head:
        raise TrackingError(f"MLflow store {path} has schema {found}, MLflow {mlflow.__version__} writes {head}: "
                            f"run `mlflow db upgrade sqlite:///{path}` (or install the MLflow that wrote it), then re-run")
    for table, columns in {"experiments": ("experiment_id", "artifact_location"), **TABLES}.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if missing := [c for c in columns if c not in have]:
            raise TrackingError(f"MLflow store {path}: table {table} has no column {', '.join(missing)}; "
                                "this repair does not know the schema, so it changes nothing")


def relink(uri: str | None = None, experiment: str = EXPERIMENT) -> dict[str, int]:
    """Point ``experiment`` and its moved runs and models at the store's own mlartifacts/; returns
    how many rows of each table moved (empty: nothing to do)."""
    uri = uri or tracking_uri()
    path, home = sqlite_path(uri), artifact_home(uri)
    if path is None:
        raise TrackingError(f"{uri} is not a local SQLite store: a tracking server keeps its own artifact root")
    check_store(uri)
    moved = {}
    with sqlite3.connect(path, timeout=LOCK_WAIT_S) as db:
        check_schema(db, path)
        row = db.execute("SELECT experiment_id, artifact_location FROM experiments WHERE name = ?",
                         (experiment,)).fetchone()
        if row is None or row[1] == home:
            return moved
        exp_id, old = row
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (home, exp_id))
        moved["experiments"] = 1
        for table, (key, column) in TABLES.items():
            rows = db.execute(f"SELECT {key}, {column} FROM {table} WHERE experiment_id = ? AND {column} LIKE ?",
                              (exp_id, old + "/%")).fetchall()
            moved[table] = 0
            for ident, location in rows:
                if not local_path(location).exists():  # gone: it moved with the store (or had nothing yet)
                    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (home + location[len(old):], ident))
                    moved[table] += 1
    return moved


@one_line_errors
def main(argv=None) -> None:
    p = ArgumentParser(prog="make mlflow-relink", description=__doc__.splitlines()[0])
    p.parse_args(argv)
    moved = relink()
    if not moved:
        print(f"{tracking_uri()}: experiment {EXPERIMENT!r} already keeps its artifacts beside the store; nothing to do")
    else:
        print(f"{tracking_uri()}: re-pointed at {artifact_home(tracking_uri())}: "
              + ", ".join(f"{n} {table}" for table, n in moved.items()))


if __name__ == "__main__":
    main()
