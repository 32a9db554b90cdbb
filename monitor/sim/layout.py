"""The sim's working directory: the ``bin/dataserver`` launcher, ``RUN_<NAME>``, the ``.cfg``.

Layout of ``<workdir>``::

    bin/dataserver        executable script (shebang = this Python), so /proc/PID/comm is "dataserver"
    RUN_<NAME>            the RUN file: the dataserver command, one flag per line, like srvbuild writes
    <NAME>.log            the errorlog (-e)             <NAME>.cfg   the config file (-c), .001.. backups
    <NAME>.pid            pid of the running engine 0   <NAME>.krg   shared-memory file (-M dir)
    flags.json            the application's feature flags, {"name": value}
    sim-truth.jsonl       ground truth (see truth.py)   dumps/       default dump directory
    data/master.dat       master device placeholder     supervisor.log  supervisor + dataserver stderr
    tds.port              the TDS listener's port       tds-control/  one-shot test hooks (tds/hooks.py)
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import monitor
from monitor.sim.params import SECTIONS, all_params, section_of


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths of one simulated server named ``name`` in ``workdir``."""

    workdir: Path
    name: str

    @property
    def dataserver(self) -> Path:
        return self.workdir / "bin" / "dataserver"

    @property
    def run_file(self) -> Path:
        return self.workdir / f"RUN_{self.name}"

    @property
    def errorlog(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def cfg(self) -> Path:
        return self.workdir / f"{self.name}.cfg"

    @property
    def pidfile(self) -> Path:
        return self.workdir / f"{self.name}.pid"

    @property
    def krg(self) -> Path:
        return self.workdir / f"{self.name}.krg"

    @property
    def flags(self) -> Path:
        return self.workdir / "flags.json"

    @property
    def deploy_log(self) -> Path:
        return self.workdir / "deployments.jsonl"

    @property
    def truth(self) -> Path:
        return self.workdir / "sim-truth.jsonl"

    @property
    def dump_dir(self) -> Path:
        return self.workdir / "dumps"

    @property
    def master(self) -> Path:
        return self.workdir / "data" / "master.dat"

    @property
    def properties(self) -> Path:
        return self.workdir / "sysam" / f"{self.name}.properties"

    @property
    def supervisor_log(self) -> Path:
        return self.workdir / "supervisor.log"

    @property
    def tds_port(self) -> Path:
        return self.workdir / "tds.port"

    @property
    def tds_control(self) -> Path:
        return self.workdir / "tds-control"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + rename). Raises ``OSError``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_launcher(layout: Layout) -> Path:
    """Create ``bin/dataserver``: a script whose shebang is this interpreter."""
    root = Path(monitor.__file__).resolve().parent.parent
    text = (
        f"#!{sys.executable}\n"
        "# Simulated SAP ASE dataserver (asewatch monitor/sim). Generated; do not edit.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from monitor.sim.dataserver import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    layout.dataserver.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.dataserver, text, 0o755)
    return layout.dataserver


def server_command(layout: Layout, extra: Sequence[str] = ()) -> list[str]:
    """The dataserver argv (real RUN-file flags first, sim long options after)."""
    return [
        str(layout.dataserver),
        f"-d{layout.master}",
        f"-e{layout.errorlog}",
        f"-c{layout.cfg}",
        f"-M{layout.workdir}",
        f"-N{layout.properties}",
        f"-i{layout.workdir}",
        f"-s{layout.name}",
        *extra,
    ]


def write_run_file(layout: Layout, command: Sequence[str]) -> Path:
    """Write ``RUN_<NAME>`` in srvbuild's shape: header comments, one flag per line."""
    header = [
        "#!/bin/sh",
        "#",
        f"# Adaptive Server name:\t{layout.name}",
        "# ASE page size (KB):\t4k",
        f"# Master device path:\t{layout.master}",
        f"# Error log path:\t{layout.errorlog}",
        f"# Configuration file path:\t{layout.cfg}",
        f"# Directory for shared memory files:\t{layout.workdir}",
        f"# License properties file:\t{layout.properties}",
        f"# Interfaces file directory:\t{layout.workdir}",
        "# Simulated by asewatch (monitor/sim); the supervisor adds --t0 when it starts this.",
        "#",
    ]
    body = " \\\n".join(shlex.quote(a) for a in command) + " \\\n"
    write_atomic(layout.run_file, "\n".join(header) + "\n" + body, 0o755)
    return layout.run_file


def read_run_file(path: Path) -> list[str]:
    """The command in a RUN file (comments dropped, continuations joined). Raises ``OSError``."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    return shlex.split(" ".join(ln.rstrip().removesuffix("\\") for ln in lines))


# ----------------------------------------------------------------------------- the .cfg file

# Parameters the .cfg never lists (read-only or derived at boot).
_NOT_IN_CFG = frozenset({"configuration file"})

_CFG_HEAD = """\
##############################################################################
#
#                      Configuration File for the Sybase SQL Server
#
#                 Please read the System Administration Guide (SAG)
#                 before changing any of the values in this file.
#
##############################################################################


[Configuration Options]
"""


def render_cfg(config: Mapping[str, str]) -> str:
    """The config file text: ``[Section]`` headers, ``\\tname = value|DEFAULT`` for every parameter.

    Like a real ``.cfg``, every known parameter is listed, ``DEFAULT`` where ``config`` does
    not set it; names outside the catalogue go to ``[Unknown]``.
    """
    known = [p for p in all_params() if p.name not in _NOT_IN_CFG]
    parts = [_CFG_HEAD]
    for section in (*SECTIONS, "Unknown"):
        names = sorted(
            {p.name for p in known if p.section == section}
            | {n for n in config if section_of(n) == section and n not in _NOT_IN_CFG}
        )
        if not names:
            continue
        parts.append(f"\n[{section}]\n")
        parts.extend(f"\t{name} = {config.get(name, 'DEFAULT')}\n" for name in names)
    return "".join(parts)


def read_cfg(path: Path) -> dict[str, str]:
    """Values set in a config file (``DEFAULT`` entries left out). Missing file: empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("\t") and "=" in line:
            name, _, value = line.strip().partition("=")
            if value.strip() != "DEFAULT":
                out[name.strip()] = value.strip()
    return out


def write_cfg(path: Path, config: Mapping[str, str], *, backup: bool = True) -> None:
    """Write the config file; like ASE, keep the previous one as ``<NAME>.001``, ``.002``, ..."""
    if backup and path.exists():
        n = 1
        while path.with_suffix(f".{n:03d}").exists():
            n += 1
        os.link(path, path.with_suffix(f".{n:03d}"))
    write_atomic(path, render_cfg(config))


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    """Write a JSON object atomically (used for ``flags.json``)."""
    write_atomic(path, json.dumps(dict(value), indent=2, sort_keys=True) + "\n")


def prepare(
    layout: Layout, command_extra: Sequence[str], config: Mapping[str, str], flags: Mapping[str, Any]
) -> list[str]:
    """Set up a fresh run: workdir, launcher, RUN file, master placeholder, initial cfg and flags.

    The ``.cfg`` and ``flags.json`` are reset to the scenario's initial values (a run
    starts from its scenario; restarts within the run keep what changed). A stale pid
    file and a stale ``tds.port`` are removed. Returns the dataserver command. Raises ``OSError``.
    """
    layout.workdir.mkdir(parents=True, exist_ok=True)
    layout.master.parent.mkdir(parents=True, exist_ok=True)
    layout.master.touch()
    layout.properties.parent.mkdir(parents=True, exist_ok=True)
    layout.properties.write_text(f"# SySAM properties for {layout.name}\nPE=EE\nLT=CP\n", encoding="utf-8")
    layout.pidfile.unlink(missing_ok=True)
    layout.tds_port.unlink(missing_ok=True)  # a new run picks its port afresh; restarts keep it
    for stale in layout.tds_control.glob("*.json"):
        stale.unlink(missing_ok=True)
    write_launcher(layout)
    command = server_command(layout, command_extra)
    write_run_file(layout, command)
    write_cfg(layout.cfg, config, backup=False)
    write_json(layout.flags, flags)
    return command
