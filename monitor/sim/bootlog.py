"""The errorlog text of a boot, a polite shutdown and routine events.

The SySAM, config-area and shutdown lines follow the public samples in
``corpus/errorlogs/``; the version line has the real ``@@version`` shape with a
made-up build. Boot lines come from thread 0 (kernel) and from the boot task, spid 1,
on engine 0's thread (server), as in threaded-mode logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from monitor.sim.errorlog_writer import SYSTEM, Component, Prefix
from monitor.sim.workload import Topology

Line = tuple[Prefix, Component, str]

DISCONNECT_MESSAGE = (
    "A client process exited abnormally, or a network error was encountered. "
    "Unless other errors occurred, continue processing normally."
)


def boot_lines(
    *,
    version: str,
    cfg: Path,
    errorlog: Path,
    master: Path,
    topology: Topology,
    engine_pid: Callable[[int], int],
    port: int = 5000,
) -> list[Line]:
    """The start-up sequence, in order. ``engine_pid(e)`` is the OS id shown for engine ``e``;
    ``port`` is the TDS listener's."""
    uname = os.uname()
    k: list[Line] = []

    def kernel(msg: str, prefix: Prefix = SYSTEM) -> None:
        k.append((prefix, "kernel", msg))

    kernel("SySAM: Using licenses from: /opt/sap/SYSAM-2_0/licenses/licenseserver.lic")
    kernel("SySAM: Checked out license for 1 ASE_CORE (2023.12310/permanent/4A1F 0C3D 77B2 E91A).")
    kernel("Adaptive Server Enterprise (Enterprise Edition)")
    kernel("Using config area from primary master device.")
    kernel("Using 4096 file descriptors.")
    kernel(version)
    kernel("Confidential property of SAP SE or an SAP affiliate company.")
    kernel("Copyright 1987, 2023")
    kernel("SAP SE or an SAP affiliate company. All rights reserved.")
    kernel("Unpublished rights reserved under U.S. copyright laws.")
    kernel(f"ASE booted on Linux release {uname.release} version {uname.version}.")
    kernel(f"Using '{cfg}' for configuration information.")
    kernel(f"Logging ASE messages in file '{errorlog}'.")
    kernel("Platform TCP network is forced to IPv4-only.")
    kernel("ASE booted with TCP_NODELAY enabled.")
    kernel("Network and device connection limit is 65519.")
    kernel(f"Initializing virtual device 0, '{master}' with dsync 'on'.")
    kernel("Virtual device 0 started using asynchronous (with DIRECT) i/o.")
    for e in range(topology.engines):
        here = Prefix(thread=topology.thread(e))
        if topology.process_mode:
            kernel(f"engine {e}, os pid {engine_pid(e)}  online", here)
        else:
            lwp = engine_pid(e)
            kernel(
                f"Thread {here.thread} (LWP {lwp}) of Threadpool syb_default_pool online as engine {e}", here
            )
    kernel(f"network name localhost, interface IPv4, address 127.0.0.1, type tcp, port {port}, filter NONE")
    boot = Prefix(thread=topology.thread(0), spid=1)
    recovery = (
        "Opening Master Database ...",
        "Loading ASE's default sort order and character set",
        "Recovering database 'master'.",
        "Started estimating recovery log boundaries for database 'master'.",
        "Database 'master', checkpoint=(3052, 14), first=(3052, 14), last=(3053, 2).",
        "Completed estimating recovery log boundaries for database 'master'.",
        "Started ANALYSIS pass for database 'master'.",
        "Completed ANALYSIS pass for database 'master'.",
        "Recovery complete.",
        "ASE's default unicode sort order is 'binary'.",
        "ASE's default sort order is:",
        "\t'bin_iso_1' (ID = 50)",
        "on top of default character set:",
        "\t'iso_1' (ID = 1).",
        "Master device size: 250 megabytes, or 128000 virtual pages. (A virtual page is 2048 bytes.)",
        "Recovering database 'sybsystemprocs'.",
        "Recovering database 'imx_prod'.",
        "Recovering database 'imx_audit'.",
        "Database 'imx_prod' is now online.",
        "Database 'imx_audit' is now online.",
        "Recovery complete.",
    )
    k.extend((boot, "server", msg) for msg in recovery)
    return k


def shutdown_lines(sa: Prefix) -> list[list[Line]]:
    """The polite ``shutdown`` sequence, in groups written with a short pause between them."""
    return [
        [(sa, "server", "Shutdown started by user 'sa'. SQL text: shutdown")],
        [(sa, "server", "ASE shutdown by request."), (sa, "kernel", "ueshutdown: exiting")],
        [(SYSTEM, "kernel", "Main thread performing final shutdown.")],
        [
            (SYSTEM, "kernel", "Blocking call queue shutdown."),
            (SYSTEM, "kernel", "SySAM: Checked in license for 1 ASE_CORE"),
        ],
    ]


def config_changed(name: str, by: str, old: str, new: str) -> str:
    """The errorlog message ``sp_configure`` writes.

    >>> config_changed("max parallel degree", "sa", "1", "4")
    "The configuration option 'max parallel degree' has been changed by 'sa' from '1' to '4'."
    """
    return f"The configuration option '{name}' has been changed by '{by}' from '{old}' to '{new}'."
