"""The one error tree. Raw exceptions are translated into these once, at the boundary.

Every error carries its context as attributes and builds its message from them, so
what a user sees says what was wrong, where, and (when we know) what to do.
"""

from __future__ import annotations


class AsewatchError(Exception):
    """Base of every error asewatch raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(AsewatchError):
    """A file given to a command is missing, unreadable or not what it should be."""

    def __init__(self, path: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class ConfigError(AsewatchError):
    """The configuration is invalid: names the file, the key and the reason."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


class SourceError(AsewatchError):
    """A source of facts (errorlog, process table, dump folder, database) failed.

    The agent logs it, counts it in ``asewatch_collector_errors_total`` and retries;
    it never stops the agent.
    """

    def __init__(self, collector: str, reason: str, *, path: str | None = None) -> None:
        where = f"{collector} ({path})" if path else collector
        super().__init__(f"{where}: {reason}")
        self.collector = collector
        self.reason = reason
        self.path = path


class StoreError(AsewatchError):
    """The state store cannot be opened, migrated or written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"state store {path}: {reason}")
        self.path = path
        self.reason = reason
