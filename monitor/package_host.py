"""The host and the ASE build, as a vendor package states them.

Dumps are analysed against the exact ``dataserver`` build, so the package carries the
``@@version`` string and what it says (version, SP/PL, EBF, platform), and the host the
server ran on: uname, the distribution from ``/etc/os-release``, CPUs and memory.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_EBF = re.compile(r"\bEBF\s*(\d+)")
_SP = re.compile(r"\bSP\s?(\d+)")
_PL = re.compile(r"\bPL\s?(\d+)")
_BITS = re.compile(r"\b(\d{2})-bit\b")


@dataclass(frozen=True, slots=True)
class AseVersion:
    """What an ``@@version`` string says; fields it does not carry are None."""

    version: str
    product: str | None
    release: str | None
    service_pack: str | None
    patch_level: str | None
    ebf: str | None
    architecture: str | None
    os: str | None
    build: str | None
    bits: int | None
    build_type: str | None
    build_date: str | None

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values."""
        return asdict(self)


def parse_version(version: str) -> AseVersion:
    """Parse an ``@@version`` string (16.0 and 15.7 shapes, see research/ase-facts.md a.2).

    >>> v = parse_version("Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64/"
    ...     "SLES 12.5/ase160sp04pl03x/3541/64-bit/FBO/Mon Jun 15 10:12:33 2023")
    >>> v.release, v.service_pack, v.patch_level, v.ebf, v.architecture, v.os, v.bits, v.build_type
    ('16.0', '04', '03', '30399', 'x86_64', 'SLES 12.5', 64, 'FBO')
    >>> v = parse_version("Adaptive Server Enterprise/15.7/EBF 21708 SMP SP110 /P/x86_64/Enterprise Linux/"
    ...     "ase157sp110x/3955/64-bit/FBO/Sat Aug 31 08:44:51 2013")
    >>> v.release, v.service_pack, v.ebf, v.os
    ('15.7', '110', '21708', 'Enterprise Linux')
    """
    parts = [p.strip() for p in version.split("/")]
    product = parts[0] or None if parts else None
    release_field = parts[1] if len(parts) > 1 else ""
    release = release_field.split()[0] if release_field.split() else None
    ebf_at = next((i for i, p in enumerate(parts) if _EBF.search(p)), None)
    rest = parts[ebf_at + 1 :] if ebf_at is not None else []
    # After the EBF field: P (platform marker), arch, OS, build id, build number, bits, FBO|OPT, date.
    if rest and rest[0] == "P":
        rest = rest[1:]
    bits_m = _BITS.search(version)
    build_type = next((p for p in parts if p in ("FBO", "OPT", "DBG")), None)
    head = "/".join(parts[: (ebf_at or 1) + 1])

    def group(rx: re.Pattern[str], text: str) -> str | None:
        m = rx.search(text)
        return m.group(1) if m else None

    return AseVersion(
        version=version,
        product=product,
        release=release,
        service_pack=group(_SP, head),
        patch_level=group(_PL, head),
        ebf=group(_EBF, version),
        architecture=rest[0] if len(rest) > 0 else None,
        os=rest[1] if len(rest) > 1 else None,
        build="/".join(rest[2:4]) if len(rest) > 3 else None,
        bits=int(bits_m.group(1)) if bits_m else None,
        build_type=build_type,
        build_date=parts[-1] if len(parts) > 1 and build_type and parts[-1] != build_type else None,
    )


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """``/etc/os-release`` as a dict (quotes removed); empty when it cannot be read."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("'\"")
    return out


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Total memory (bytes) from ``/proc/meminfo``, or None."""
    try:
        for line in meminfo.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_info(host: str | None = None) -> dict[str, Any]:
    """This host as the manifest's ``host`` and ``platform`` state it."""
    u = platform.uname()
    rel = os_release()
    return {
        "hostname": host or socket.gethostname(),
        "uname": {"system": u.system, "node": u.node, "release": u.release, "version": u.version,
                  "machine": u.machine},
        "distribution": {k.lower(): rel[k] for k in ("PRETTY_NAME", "NAME", "ID", "VERSION_ID") if k in rel},
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "python": platform.python_version(),
    }  # fmt: skip
