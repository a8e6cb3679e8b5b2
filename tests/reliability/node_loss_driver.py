"""`vaepipe ARGS` with a ``ParkOnNode`` fault hook in its training, as a process of its own.

    python node_loss_driver.py MARKER NODE_ID EPOCH -- ARGS...

A driver of its own because Ray caches its auth mode and token in the first process that uses
it: the test process (a local Ray for other modules) cannot join the token-auth cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # fault_hooks, beside this file

import fault_hooks  # noqa: E402

from jobs import cli  # noqa: E402
from pipeline.train import trainer  # noqa: E402


def main(argv: list[str]) -> int:
    marker, node_id, epoch, sep, *args = argv
    assert sep == "--", argv
    fault_hooks.by_value()
    hook = fault_hooks.ParkOnNode(marker, node_id, int(epoch))
    real = trainer.run_training
    trainer.run_training = lambda cfg, **kw: real(cfg, hooks=[hook], **kw)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
