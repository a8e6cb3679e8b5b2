"""The one error type users see: a problem with their input, stated in one line."""


class UserError(Exception):
    """Bad input or environment (missing file, wrong shape, unreachable server).

    The CLI prints ``vaepipe: error: <message>`` and exits non-zero; the message must name the
    offending file, field or value so the user can fix it without a traceback.
    """


class ConfigError(UserError, ValueError):
    """A config value or key that is not allowed; the message names the full key and the value.

    Also a ``ValueError``, the error ``vae_core``'s configs raise, so callers that catch either
    keep working.
    """
