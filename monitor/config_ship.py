"""The ``[ship]`` and ``[vendor]`` config sections: where packages go, when, how fast, and to whom.

Validated like the rest of the config (pydantic, frozen, unknown keys refused) and
self-contained so ``monitor/config.py`` can import it without a cycle. No secret is
held here: an SFTP target names its key file, an HTTPS target names the file or the
environment variable its token is read from at each upload. Durations are float
seconds, sizes bytes, bandwidths bytes per second, windows local wall-clock time.

    [ship]
    spool_dir = "/var/spool/asewatch/packages"   # finished packages: <spool>/<package_id>/
    metadata_first = true        # manifest and excerpts at once, dumps on release
    release_after = 86400        # ... or after this many seconds (none: only `ship --release`)
    window = "22:00-06:00"       # dumps go only in this local window (default for targets)

    [[ship.target]]
    name = "vendor"
    kind = "sftp"                # or "directory", "https"
    host = "sftp.vendor.example"
    user = "c123456"
    key_file = "/etc/asewatch/vendor_ed25519"     # chmod 600
    known_hosts = "/etc/asewatch/known_hosts"     # the vendor's host key; never learnt on the fly
    remote_dir = "incoming"
    bandwidth = 5_000_000

    [vendor]
    name = "SAP"
    contact_email = "support@vendor.example"
    customer_number = "123456"
    contract_id = "ES-2024-001"
    contract_end = 2027-03-31
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from monitor.config_types import ConfigPath, Seconds, Section

__all__ = [
    "DirectoryTargetConfig",
    "HttpsTargetConfig",
    "SftpTargetConfig",
    "ShipConfig",
    "TargetConfig",
    "TimeWindow",
    "VendorConfig",
    "parse_window",
]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_HEADER = re.compile(r"[A-Za-z0-9-]+")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A daily window of local wall-clock time, ``start`` inclusive to ``end`` exclusive;
    it wraps midnight when ``end <= start`` (``22:00-06:00``)."""

    start: dtime
    end: dtime

    def contains(self, at: datetime) -> bool:
        """Whether the local time ``at`` is inside the window.

        >>> w = parse_window("22:00-06:00")
        >>> [w.contains(datetime(2026, 1, 1, h)) for h in (21, 22, 3, 6)]
        [False, True, True, False]
        """
        t = at.time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def seconds_until_open(self, at: datetime) -> float:
        """Seconds from ``at`` until the window next opens (0 when it is open).

        >>> parse_window("22:00-06:00").seconds_until_open(datetime(2026, 1, 1, 21, 30))
        1800.0
        """
        if self.contains(at):
            return 0.0
        opens = at.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        if opens <= at:
            opens += timedelta(days=1)
        return (opens - at).total_seconds()

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(text: str) -> TimeWindow:
    """``"HH:MM-HH:MM"`` as a :class:`TimeWindow`. Raises ValueError when it is not one
    (or when start equals end: leave the window out to mean "any time").

    >>> str(parse_window(" 8:00 - 17:30 "))
    '08:00-17:30'
    """
    parts = [p.strip() for p in text.split("-")]
    found = [_HHMM.fullmatch(p) for p in parts] if len(parts) == 2 else []
    if len(found) != 2 or not all(found):
        raise ValueError(f"{text!r} is not a time window; write it as HH:MM-HH:MM, e.g. 22:00-06:00")
    start, end = (dtime(int(m.group(1)), int(m.group(2))) for m in found if m is not None)
    if start == end:
        raise ValueError(f"{text!r}: start equals end; leave the window out to mean any time")
    return TimeWindow(start, end)


def _window(value: str | None) -> str | None:
    if value is not None:
        parse_window(value)
    return value


Window = Annotated[StrictStr | None, AfterValidator(_window)]


class _TargetBase(Section):
    """Settings every target has. ``name`` labels metrics and the store (letters, digits,
    ``_.-``); ``bandwidth`` caps bytes/s (0: no cap); ``window`` overrides ``[ship] window``
    for this target; ``timeout`` (s) bounds each network wait."""

    name: StrictStr
    enabled: StrictBool = True
    bandwidth: Annotated[StrictInt, Field(ge=0)] = 0
    window: Window = None
    timeout: Seconds = 60.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a target name (letters, digits, _ . -; at most 64)")
        return value


class DirectoryTargetConfig(_TargetBase):
    """``kind = "directory"``: a local folder or a network mount. ``path`` must exist (a
    mount that is not mounted must not silently fill the local disk)."""

    kind: Literal["directory"]
    path: ConfigPath


class SftpTargetConfig(_TargetBase):
    """``kind = "sftp"``: ``user@host:port``, key-based only. ``key_file`` must be mode 0600;
    ``known_hosts`` holds the server's host key (an unknown or changed key is refused).
    ``remote_dir``: where packages go (relative to the login folder unless absolute).
    ``verify``: ``readback`` (read the upload back and hash it: works everywhere) or
    ``sha256sum`` (run it over an exec channel: no download, needs a shell account)."""

    kind: Literal["sftp"]
    host: StrictStr = Field(min_length=1)
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 22
    user: StrictStr = Field(min_length=1)
    key_file: ConfigPath
    known_hosts: ConfigPath
    remote_dir: StrictStr = "."
    verify: Literal["readback", "sha256sum"] = "readback"


class HttpsTargetConfig(_TargetBase):
    """``kind = "https"``: each file is sent to ``<url>/<package_id>/<file>`` with its SHA-256
    in ``checksum_header``; the server's answer must repeat it. The bearer token comes
    from ``token_file`` or the environment variable ``token_env`` (exactly one), read at
    each upload and never logged. ``ca_file``: a CA bundle for a private CA."""

    kind: Literal["https"]
    url: StrictStr
    token_file: ConfigPath | None = None
    token_env: StrictStr | None = None
    ca_file: ConfigPath | None = None
    method: Literal["PUT", "POST"] = "PUT"
    checksum_header: StrictStr = "X-Checksum-SHA256"

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.lower().startswith("https://") or len(value) <= len("https://"):
            raise ValueError(f"{value!r} is not an https:// URL (dumps never travel in clear text)")
        return value.rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("checksum_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not _HEADER.fullmatch(value):
            raise ValueError(f"{value!r} is not an HTTP header name")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> HttpsTargetConfig:
        if (self.token_file is None) == (self.token_env is None):
            raise PydanticCustomError(
                "asewatch",
                "{reason}",
                {"key": "token_file", "reason": "give exactly one of token_file and token_env"},
            )
        return self


TargetConfig = Annotated[
    DirectoryTargetConfig | SftpTargetConfig | HttpsTargetConfig, Field(discriminator="kind")
]


class ShipConfig(Section):
    """``[ship]``: the spool and the targets (``[[ship.target]]``).

    ``spool_dir``: where finished packages appear (None: ``<state_dir>/spool``).
    ``metadata_first``: metadata files go at once; dumps wait for ``asewatch ship
    --release PACKAGE`` or ``release_after`` seconds (None: only on release).
    ``window``: the default time window for dumps (None: any time); outside it dumps
    wait, and metadata too unless ``metadata_first``. ``scan_interval`` (s): how often
    the spool is looked at. Failed uploads are retried after an exponential backoff
    from ``retry_initial`` to ``retry_max`` seconds with up to ``retry_jitter`` seconds of
    random jitter. ``probe_interval`` (s): how often an idle target is checked (a connect).
    ``doctor_interval`` (s): how often the agent runs the readiness checks (``asewatch
    doctor``, a test upload included) for ``ase_dump_capture_ready``.
    """

    enabled: StrictBool = True
    spool_dir: ConfigPath | None = None
    targets: tuple[TargetConfig, ...] = Field(default=(), alias="target")
    metadata_first: StrictBool = False
    release_after: Seconds | None = None
    window: Window = None
    scan_interval: Seconds = 5.0
    retry_initial: Seconds = 30.0
    retry_max: Seconds = 3600.0
    retry_jitter: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 10.0
    probe_interval: Seconds = 300.0
    doctor_interval: Seconds = 900.0

    @model_validator(mode="after")
    def _unique(self) -> ShipConfig:
        seen: set[str] = set()
        for i, t in enumerate(self.targets):
            if t.name in seen:
                raise PydanticCustomError(
                    "asewatch", "{reason}", {"key": f"target[{i}].name", "reason": f"target {t.name!r} twice"}
                )
            seen.add(t.name)
        if self.retry_max < self.retry_initial:
            raise PydanticCustomError(
                "asewatch", "{reason}", {"key": "retry_max", "reason": "must be at least retry_initial"}
            )
        return self

    def window_of(self, target: TargetConfig) -> TimeWindow | None:
        """The window that applies to ``target`` (its own, else the default), parsed."""
        text = target.window if target.window is not None else self.window
        return None if text is None else parse_window(text)


class VendorConfig(Section):
    """``[vendor]``: who gets the dumps, and under which contract. ``doctor`` checks that the
    contact and contract are filled in and that ``contract_end`` is more than
    ``contract_warn_days`` away; the metrics export ``contract_end``; packages state it
    (``monitor.config_package.vendor_of``). ``case_number``: an open case, when known."""

    name: StrictStr = ""
    contact_name: StrictStr = ""
    contact_email: StrictStr = ""
    contact_phone: StrictStr = ""
    customer_number: StrictStr = ""
    contract_id: StrictStr = ""
    contract_end: date | None = None
    contract_warn_days: Annotated[StrictInt, Field(ge=0)] = 30
    support_url: StrictStr = ""
    case_number: StrictStr = ""
