"""The value types every config section shares: paths relative to the config file, durations,
and the frozen, unknown-keys-refused section base. One definition, imported by each
``monitor/config*.py`` (they cannot import ``monitor.config`` itself: it imports them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """``~`` expanded; a relative path is taken from the config file's folder (context ``base``)."""
    value = value.expanduser()
    base = info.context.get("base") if isinstance(info.context, dict) else None
    return value if value.is_absolute() or base is None else Path(base) / value


ConfigPath = Annotated[Path, AfterValidator(resolve_path)]
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]


class Section(BaseModel):
    """A config section: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
