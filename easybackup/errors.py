"""Errors that carry a message, the detail, and a hint for the operator."""

from __future__ import annotations

from dataclasses import dataclass, field

# Error kinds reported in `result.error.kind` and `db_finished.error.kind`.
KINDS = (
    "connection",
    "authentication",
    "not_found",
    "permission",
    "timeout",
    "dump_failed",
    "invalid_dump",
    "compressor_failed",
    "storage",
    "verification",
    "cancelled",
    "crashed",
    "config",
    "internal",
    "superseded",  # a restore drill's backup, deleted by retention under the drill after a newer one (no failure)
)


class EasybackupError(Exception):
    """Base error: `message` says what failed, `detail` the evidence, `hint` what to do."""

    kind = "internal"
    transient = False

    def __init__(
        self,
        message: str,
        detail: str | None = None,
        hint: str | None = None,
        *,
        kind: str | None = None,
        transient: bool | None = None,
        exit_codes: dict | None = None,
        last_lines: list[str] | tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        if kind is not None:
            self.kind = kind
        if transient is not None:
            self.transient = transient
        self.exit_codes = dict(exit_codes or {})
        self.last_lines = list(last_lines)

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return " — ".join(parts)

    def to_dict(self) -> dict:
        """Return the wire form used in `result.error` (DESIGN.md, Wire format)."""
        return ErrorInfo(
            kind=self.kind,
            transient=self.transient,
            message=self.message,
            detail=self.detail,
            hint=self.hint,
            exit_codes=self.exit_codes,
            last_lines=self.last_lines,
        ).to_dict()


class ConfigError(EasybackupError):
    """One or more configuration problems; `problems` holds one `path: message` line each."""

    kind = "config"

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} configuration problem(s)",
            detail="; ".join(self.problems),
            hint=hint,
        )


class UsageError(EasybackupError):
    """The command line asked for something that does not exist (unknown strategy, bad flag value)."""

    kind = "config"


@dataclass
class ErrorInfo:
    """The serialisable shape of an error, as it travels on the wire and into health/Slack."""

    kind: str
    message: str
    transient: bool = False
    detail: str | None = None
    hint: str | None = None
    exit_codes: dict = field(default_factory=dict)
    last_lines: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "transient": self.transient,
            "message": self.message,
            "detail": self.detail,
            "hint": self.hint,
            "exit_codes": dict(self.exit_codes),
            "last_lines": list(self.last_lines),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ErrorInfo:
        return cls(
            kind=str(data.get("kind") or "internal"),
            message=str(data.get("message") or ""),
            transient=bool(data.get("transient", False)),
            detail=data.get("detail"),
            hint=data.get("hint"),
            exit_codes=dict(data.get("exit_codes") or {}),
            last_lines=list(data.get("last_lines") or []),
        )

    def one_line(self) -> str:
        """Return the error as one line for tables, health and Slack."""
        text = self.message
        if self.detail:
            text += f": {self.detail}"
        return " ".join(text.split())
