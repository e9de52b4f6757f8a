"""Stage check: every params section checked before any stage runs, so that a bad value stops the
pipeline before it starts. It is not the guard against shell code in a name: `dvc repro -s` skips
it, so no name of params.yaml is pasted into a command (the train stages read their run from
params.yaml by $DVC_STAGE), and each stage checks what it uses."""
from betasched.core.files import check_writable, write_text
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.compose import check_all
from betasched.pipeline.params import load_params

OUT = "data/params.ok"  # constant content: a new param value re-runs this check, not the trainings


@one_line_errors
def check_stage() -> None:
    check_all(load_params())
    check_writable("data")
    write_text(OUT, "params.yaml passed betasched.pipeline.compose.check_all\n")


if __name__ == "__main__":
    check_stage()
