"""Errors the domain raises; the web and the CLI turn them into messages."""


class DomainError(Exception):
    """Something a person asked for that the hub cannot do, with a reason to show them."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """The thing asked for does not exist (or is no longer kept)."""


class Invalid(DomainError):
    """Input that breaks a rule: too long, empty, the wrong kind."""


class Conflict(DomainError):
    """The request clashes with what exists: a taken handle, a repeated node."""
