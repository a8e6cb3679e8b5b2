"""Turn a ``UserError`` raised inside a Ray Data task back into a one-line ``UserError``.

Ray wraps exceptions from remote tasks (``RayTaskError``, ``UserCodeException``) and their
``str()`` is a multi-line traceback; the CLI must print the original one-line message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipeline.errors import UserError


def find_user_error(exc: BaseException) -> UserError | None:
    """The innermost ``UserError`` in ``exc``'s cause chain (Ray's ``.cause`` included)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    found: UserError | None = None
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError) and "\n" not in str(e):
            found = e
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return found


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise a wrapped ``UserError`` from Ray as a plain one-line ``UserError``."""
    try:
        yield
    except UserError as exc:
        inner = find_user_error(exc)
        if inner is None or inner is exc:
            raise
        raise UserError(str(inner)) from None
    except Exception as exc:
        inner = find_user_error(exc)
        if inner is None:
            raise
        raise UserError(str(inner)) from None
