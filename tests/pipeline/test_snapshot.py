"""Which failures of a stage run by the Ray launcher are retried: DVC's own words for each."""
import pytest

from betasched.pipeline.snapshot import StageFailed, TransientStageFailure, failure_kind

FAILED = "ERROR: failed to reproduce 'train@sgd-beta-0': failed to run: python stages/train.py --seed 0, exited with {}"


@pytest.mark.parametrize("code, output, kind", [
    (255, FAILED.format(137), TransientStageFailure),  # `kill -9` or the OOM killer, through cmd's shell
    (255, FAILED.format(143), TransientStageFailure),  # a raw SIGTERM (a preemption), through the shell
    (255, FAILED.format(130), TransientStageFailure),  # the trainer's own exit on SIGTERM / SIGINT
    (255, FAILED.format(-9), TransientStageFailure),   # DVC's own child killed
    (-9, "", TransientStageFailure),                   # dvc itself killed
    (255, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", TransientStageFailure),
    (255, FAILED.format(2), StageFailed),              # a bad param: the same error again
    (255, FAILED.format(1), StageFailed),              # a traceback
    (255, FAILED.format(1370), StageFailed),           # not 137
    (255, "error: checkpoint step 130 is corrupt\n" + FAILED.format(2), StageFailed),
], ids=["137", "143", "130", "-9", "dvc killed", "cuda oom", "exit 2", "exit 1", "exit 1370", "130 in a message"])
def test_which_failures_are_retried(code, output, kind):
    assert failure_kind(code, output) is kind
