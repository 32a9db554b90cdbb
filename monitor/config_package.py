"""The ``[package]`` config section: what goes into a vendor package, and how it is sealed.

Validated like the rest of the config (pydantic, frozen, unknown keys refused) and
self-contained, so that ``monitor/config.py`` can import it without an import cycle.
Sizes are bytes, durations days. Who the
package is for comes from the ``[vendor]`` section (monitor/config_ship.py), read
through :func:`vendor_of` so that a config without it still packages.

    [package]
    out_dir = "/var/spool/asewatch/packages"   # default: [ship] spool_dir, else <state_dir>/spool
    excerpt_lines_before = 200
    excerpt_lines_after = 100
    ledger_days = 14

    [package.encryption]
    recipients = ["age1...the vendor's public key..."]
    scope = "dumps"                       # or "package": the whole package as one .tar.age
    required = true                       # refuse to package without recipients

    [package.redact.patterns]             # name = regular expression, replaced by <name>
    journal_id = 'JN-\\d{8}'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from monitor.config_types import ConfigPath, Section

__all__ = [
    "EncryptionConfig",
    "PackageConfig",
    "RedactConfig",
    "VendorDetails",
    "package_config_of",
    "parse_recipient",
    "validate_package_section",
    "vendor_of",
]

MiB = 1024 * 1024
_PATTERN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


def parse_recipient(text: str) -> Any:
    """The pyrage recipient for an age public key (``age1...``) or an SSH public key
    (``ssh-ed25519 ...`` / ``ssh-rsa ...``). Raises ValueError naming what is wrong."""
    import pyrage  # noqa: PLC0415 - optional at import time; only packaging needs it

    text = text.strip()
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise ValueError(f"{text[:24]}...: not a valid key ({exc})") from None
    raise ValueError(f"{text[:24]!r}: not an age public key (age1...) or an SSH public key")


class EncryptionConfig(Section):
    """``[package.encryption]``: seal what leaves the host with age.

    ``recipients``: age public keys (``age1...``) or SSH public keys of whoever may open
    the package; empty means no encryption. ``scope``: ``dumps`` encrypts each dump
    (the rest stays readable, and is redacted), ``package`` puts the whole package into
    one ``package.tar.age``. ``required``: refuse to build a package without recipients.
    """

    recipients: tuple[StrictStr, ...] = ()
    scope: Literal["dumps", "package"] = "dumps"
    required: StrictBool = False

    @field_validator("recipients")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            parse_recipient(key)
        return tuple(k.strip() for k in value)

    @model_validator(mode="after")
    def _required(self) -> EncryptionConfig:
        if self.required and not self.recipients:
            raise ValueError("required = true but no recipients: add the vendor's age public key")
        return self


def _pairs(value: object) -> object:
    # A TOML table {name = regex}, kept as pairs.
    return tuple(value.items()) if isinstance(value, dict) else value


class RedactConfig(Section):
    """``[package.redact]``: ``patterns`` maps a name to a regular expression; every match in
    the package (outside the dumps) becomes ``<name>``, on top of the built-in rules."""

    # Kept as (name, regex) pairs, not a dict: the config stays hashable (frozen).
    patterns: Annotated[tuple[tuple[StrictStr, StrictStr], ...], BeforeValidator(_pairs)] = ()

    @field_validator("patterns")
    @classmethod
    def _compile(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for name, rx in value:
            if not _PATTERN_NAME.fullmatch(name):
                raise ValueError(f"pattern name {name!r}: use letters, digits and _ (a letter first)")
            try:
                compiled = re.compile(rx)
            except re.error as exc:
                raise ValueError(f"pattern {name!r}: not a regular expression ({exc})") from None
            if compiled.fullmatch(""):
                raise ValueError(
                    f"pattern {name!r} matches the empty string; it would replace nothing useful"
                )
        return value


class PackageConfig(Section):
    """``[package]``: what goes into a vendor package and how it is built.

    ``out_dir``: where packages are written (default ``<state_dir>/packages``).
    ``excerpt_lines_before``/``after``: errorlog lines around the crash block.
    ``errorlog_max_bytes``: cap on the errorlog since the last boot (the newest part is kept).
    ``ledger_days``: days of the change ledger before the crash.
    ``compression_level`` (zstd 1-19), ``threads`` (-1: one per CPU, 0: none),
    ``block_bytes`` (read size, 1-64 MiB). ``estimated_ratio``: compressed/original size
    used to check free space first (None: sample the dump). ``space_margin_bytes``: kept
    free on top. ``archive``: also write ``<package>.tar`` beside the folder.
    """

    out_dir: ConfigPath | None = None
    excerpt_lines_before: Annotated[StrictInt, Field(ge=0, le=100_000)] = 200
    excerpt_lines_after: Annotated[StrictInt, Field(ge=0, le=100_000)] = 100
    errorlog_max_bytes: Annotated[StrictInt, Field(ge=4096)] = 64 * MiB
    ledger_days: Annotated[float, Field(strict=False, gt=0, allow_inf_nan=False)] = 14.0
    compression_level: Annotated[StrictInt, Field(ge=1, le=19)] = 3
    threads: Annotated[StrictInt, Field(ge=-1, le=256)] = -1
    block_bytes: Annotated[StrictInt, Field(ge=MiB, le=64 * MiB)] = 4 * MiB
    estimated_ratio: Annotated[float, Field(gt=0, le=2, allow_inf_nan=False)] | None = None
    space_margin_bytes: Annotated[StrictInt, Field(ge=0)] = 64 * MiB
    archive: StrictBool = False
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    redact: RedactConfig = Field(default_factory=RedactConfig)


def package_config_of(config: object) -> PackageConfig:
    """The ``[package]`` section of a loaded config, or the defaults when the config has none
    (a :class:`monitor.config.Config` that does not carry it yet, or None)."""
    package = getattr(config, "package", None)
    return package if isinstance(package, PackageConfig) else PackageConfig()


def validate_package_section(data: Mapping[str, Any], base: Path | None) -> PackageConfig:
    """Validate the ``package`` table of a parsed TOML document (absent: the defaults).

    Raises pydantic's ValidationError (locations relative to ``[package]``).
    """
    return PackageConfig.model_validate(data.get("package", {}), context={"base": base})


@dataclass(frozen=True, slots=True)
class VendorDetails:
    """The support path as a package states it; empty strings from the config become None."""

    name: str | None
    customer_number: str | None
    contract_id: str | None
    contract_end: str | None
    contact_name: str | None
    contact_email: str | None
    contact_phone: str | None
    support_url: str | None
    case_number: str | None

    def missing(self) -> list[str]:
        """What a vendor needs to open a case and the config does not say."""
        need = {"name": self.name, "customer_number": self.customer_number, "contact": self.contact_email
                or self.contact_phone or self.contact_name}  # fmt: skip
        return [k for k, v in need.items() if not v]


def vendor_of(config: object, case_number: str | None = None) -> VendorDetails:
    """The ``[vendor]`` section of ``config`` (any object with those attributes; missing ones
    are None), with ``case_number`` (e.g. ``--case``) over the configured one."""
    vendor = getattr(config, "vendor", None)

    def get(name: str) -> str | None:
        value = getattr(vendor, name, None)
        return (str(value).strip() or None) if value is not None else None

    return VendorDetails(
        name=get("name"),
        customer_number=get("customer_number"),
        contract_id=get("contract_id"),
        contract_end=get("contract_end"),
        contact_name=get("contact_name"),
        contact_email=get("contact_email"),
        contact_phone=get("contact_phone"),
        support_url=get("support_url"),
        case_number=(case_number or "").strip() or get("case_number"),
    )
