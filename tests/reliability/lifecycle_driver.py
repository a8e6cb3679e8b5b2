"""A driver that opens a vaepipe run and ends the way argv[1] says (no Ray, no training).

    python lifecycle_driver.py ok|raise|exit1|exit0 EXPERIMENT

Prints the run id first, so the test can look the run up whatever happens after.
"""

from __future__ import annotations

import sys

from pipeline.tracking import mlflow_store, runs


def main(how: str, experiment: str) -> None:
    mlflow_store.configure()
    run_id, _ = runs.open_run(experiment, f"lifecycle-{how}", f"lifecycle/{how}")
    print(run_id, flush=True)
    with runs.tracked_run(run_id):
        if how == "raise":
            raise RuntimeError("injected failure")
        if how == "exit1":
            sys.exit(1)
        if how == "exit0":
            sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
