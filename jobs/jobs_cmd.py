"""``vaepipe jobs list|logs|stop``: the rest of a Ray job's lifecycle."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from pipeline.cluster import submission
from pipeline.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", help="Ray Jobs API URL (default: RAY_ADDRESS)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="jobs with their status and entrypoint")
    logs = actions.add_parser("logs", parents=[common], help="a job's logs")
    logs.add_argument("job_id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    stop = actions.add_parser("stop", parents=[common], help="stop a running job")
    stop.add_argument("job_id")
    stop.add_argument("--no-wait", action="store_true", help="do not wait for it to stop")


def run(args: argparse.Namespace) -> int:
    client, url, token = submission.connect(args.address)
    with submission.cluster_errors(url, token), _unknown_job(args, url):
        if args.action == "list":
            return _list(client)
        if args.action == "logs":
            return _logs(client, args.job_id, args.follow)
        return _stop(client, args.job_id, wait=not args.no_wait)


@contextlib.contextmanager
def _unknown_job(args: argparse.Namespace, url: str) -> Iterator[None]:
    """The SDK reports an unknown job id as a RuntimeError carrying HTTP 404."""
    try:
        yield
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise UserError(f"no job {getattr(args, 'job_id', '?')} on {url}") from None
        raise


def _list(client) -> int:
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
    for job in jobs:
        status = str(job.status).rsplit(".", 1)[-1]
        print(f"{job.submission_id or job.job_id}\t{status}\t{job.entrypoint}")
    return 0


def _logs(client, job_id: str, follow: bool) -> int:
    if not follow:
        print(client.get_job_logs(job_id), end="")
        return 0
    submission.follow_logs(client, job_id)
    return submission.final_exit_code(client, job_id)


def _stop(client, job_id: str, wait: bool) -> int:
    client.stop_job(job_id)
    if wait:
        status = submission.wait_final(client, job_id, timeout_s=120)
        print(f"{job_id}\t{status}")
    return 0
