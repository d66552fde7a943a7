"""Errors a person can act on: printed as one line, never as a traceback."""


class UserError(Exception):
    """Something outside the spec is wrong (a missing tool, an unreachable host); the message says how to fix it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
