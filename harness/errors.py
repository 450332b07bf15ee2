"""The one user-error type: caught once in the CLI and printed as one line."""


class UserError(Exception):
    """Bad input (spec, file, option). The message says what to fix; the CLI exits 1."""
