"""`make ui`: the MLflow UI over this project's store, on 127.0.0.1 only, with one worker (a
2-core machine has no use for MLflow's default of 4). A port already taken, or an unusable store,
is one `error:` line and exit 2, instead of a UI that silently shows another store."""
from __future__ import annotations

import os
import shutil
import socket
import sys

from ..core.errors import TrackingError
from .cli import ArgumentParser, one_line_errors
from .store import tracking_uri
from .store_file import check_store


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise TrackingError(f"{host}:{port} is taken ({exc.strerror}): another server (an earlier "
                                f"`make ui`?) listens there; stop it, or use `make ui PORT={port + 1}`") from exc


@one_line_errors
def main(argv=None) -> None:
    p = ArgumentParser(prog="make ui", description=__doc__)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    uri = tracking_uri()
    check_store(uri)
    check_port_free("127.0.0.1", a.port)
    mlflow = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    print(f"MLflow UI on http://127.0.0.1:{a.port} over {uri} (Ctrl-C stops it)", flush=True)
    os.execv(mlflow, [mlflow, "ui", "--host", "127.0.0.1", "--port", str(a.port), "--workers", str(a.workers),
                      "--backend-store-uri", uri])


if __name__ == "__main__":
    main()
