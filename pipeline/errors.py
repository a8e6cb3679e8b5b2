"""The one error type users see: a problem with their input, stated in one line."""


class UserError(Exception):
    """Bad input or environment (missing file, wrong shape, unreachable server).

    The CLI prints ``vaepipe: error: <message>`` and exits non-zero; the message must name the
    offending file, field or value so the user can fix it without a traceback.
    """
