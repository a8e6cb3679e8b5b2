"""``vaepipe ARGS`` whose rank 0 stops for good once the first epoch is checkpointed and in
MLflow (``fault_hooks.HoldAfterCheckpoint``): the real CLI in its own process, for a test that
kills the driver itself at a known point.

    python held_cli.py MARKER -- train ...
"""

from __future__ import annotations

import os
import sys

import fault_hooks

from jobs import cli
from pipeline.train import trainer


def main(marker: str, args: list[str]) -> int:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    hook = fault_hooks.HoldAfterCheckpoint(marker, epoch=0, tracking_uri=uri)
    fault_hooks.by_value()  # the workers cannot import this folder's modules by name
    real = trainer.run_training
    trainer.run_training = lambda cfg, **kw: real(cfg, hooks=[hook], **kw)
    return cli.main(args)


if __name__ == "__main__":
    assert sys.argv[2] == "--", sys.argv
    sys.exit(main(sys.argv[1], sys.argv[3:]))
