"""The one error type users see: a problem with their input, stated in one line."""


class UserError(Exception):
    """Bad input or environment (missing file, wrong shape, unreachable server).

    The CLI prints ``vaepipe: error: <message>`` and exits non-zero; the message must name the
    offending file, field or value so the user can fix it without a traceback.
    """


class JobFailed(Exception):
    """A job that could not finish although its input was fine: its workers kept dying or
    hanging until the restart budget (``train.max_failures``) was spent.

    Not a bug either: the CLI prints ``vaepipe: error: <message>`` (one line naming the failed
    rank and the cause, no traceback) and exits 1.
    """
