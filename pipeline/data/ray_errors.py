"""Turn a ``UserError`` raised inside a Ray Data task back into a one-line ``UserError``.

Ray wraps exceptions from remote tasks (``RayTaskError``, ``UserCodeException``) and their
``str()`` is a multi-line traceback; the CLI must print the original one-line message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline.errors import UserError


def find_user_error(exc: BaseException) -> str | None:
    """First line of the original ``UserError`` in ``exc``'s cause chain, if any.

    Ray's ``RayTaskError(UserError)`` subclasses ``UserError`` but prints a traceback; the
    original is its ``.cause``, whose message Ray Data extends with retry advice (dropped).
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    found: str | None = None
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError) and not type(e).__module__.startswith("ray"):
            found = (str(e).splitlines() or [""])[0]
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return found or _named_in_traceback(exc)


def _named_in_traceback(exc: BaseException) -> str | None:
    """The ``UserError`` line of a remote traceback that Ray passed on as text only (Ray Data's
    ``UserCodeException`` loses the original exception object on its way to the driver)."""
    marker = f"{UserError.__module__}.{UserError.__qualname__}: "
    for line in str(exc).splitlines():
        if line.startswith(marker):
            return line[len(marker) :]
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise a wrapped ``UserError`` from Ray as a plain one-line ``UserError``."""
    try:
        yield
    except Exception as exc:
        message = find_user_error(exc)
        if message is None or (type(exc) is UserError and str(exc) == message):
            raise
        raise UserError(message) from None


def get_all(refs: Sequence[Any], upstream: Sequence[Any] = ()) -> list[Any]:
    """``ray.get(refs)``; when one failed, every other failed result (and ``upstream``: the
    refs they were computed from) is fetched too before the error is raised. Ray logs a
    failed result that nobody fetched ("Unhandled error", a task traceback) on the driver's
    stderr when it is garbage collected, after vaepipe's one-line report."""
    import ray

    try:
        return ray.get(list(refs))
    except Exception:
        for ref in [*upstream, *refs]:
            with contextlib.suppress(Exception):
                ray.get(ref)
        raise
