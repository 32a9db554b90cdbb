"""``python -m monitor.sim``: run the simulated dataserver by hand, or show a scenario's plan.

python -m monitor.sim run --workdir /tmp/sim --scenario incident
python -m monitor.sim plan --scenario incident
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from monitor.errors import AsewatchError
from monitor.sim.control import SimServer
from monitor.sim.scenario import PlannedCall, incident_path, load_scenario


def _plan(scenario: str) -> int:
    sc = load_scenario(incident_path() if scenario == "incident" else scenario)
    print(f"scenario {sc.name}: {sc.description}")
    rows = [(ev.at, f"{ev.kind:<10} {ev.name} = {ev.value!r} (by {ev.by})") for ev in sc.events]
    rows += [(c.at, f"call       {c.procedure}{_how(c)} -> {c.outcome}{_shows(c)}") for c in sc.plan()]
    if sc.end_after is not None:
        rows.append((sc.end_after, "shutdown"))
    for at, text in sorted(rows, key=lambda r: r[0]):
        print(f"  t={at:6.1f}  {text}")
    return 0


def _how(c: PlannedCall) -> str:
    """Who runs a planned call, after what, and how much: `` (imx_batch, IMX Batch, 16 statements)``."""
    if c.call is None:
        return ""
    parts = [p for p in (c.call.login, c.call.program) if p]
    if c.call.before:
        parts.append("after " + ", ".join(c.call.before))
    if c.call.statements > 1:
        parts.append(f"{c.call.statements} statements")
    return f" ({', '.join(parts)})" if parts else ""


def _shows(c: PlannedCall) -> str:
    """What a crash's block shows as ``SQL causing error``."""
    if c.outcome != "crash" or c.call is None:
        return ""
    return "; the block shows " + (
        "the exec" if c.call.causing == "exec" else "the select inside the procedure"
    )


def _run(ns: argparse.Namespace) -> int:
    stop = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim = SimServer(
        ns.workdir,
        name=ns.name,
        scenario=ns.scenario,
        supervise=not ns.no_supervise,
        rate=ns.rate,
        dump_size=ns.dump_size,
        engines=ns.engines,
        tds_port=None if ns.tds_port < 0 else ns.tds_port,
    )
    pid = sim.start()
    print(f"dataserver {ns.name} running, pid {pid}")
    print(f"  errorlog  {sim.errorlog}\n  dumps     {sim.dump_dir}\n  truth     {sim.truth_path}")
    if ns.tds_port >= 0:
        print(f"  odbc      {sim.connection_string()}")
    print("  Ctrl-C stops it.")
    deadline = time.monotonic() + ns.duration if ns.duration else None
    try:
        while not stop and sim.running() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    finally:
        sim.stop()
    for rec in sim.truth():
        if rec.kind in ("boot", "config", "flag", "deployment", "crash", "shutdown", "exit"):
            print(f"  t={rec.st:7.2f}  {rec.kind:<10} {dict(rec.fields)}"[:160])
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI. Returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m monitor.sim", description="simulated SAP ASE dataserver")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a simulated server in a working directory")
    run.add_argument("--workdir", required=True)
    run.add_argument("--name", default="CLINIC1")
    run.add_argument("--scenario", help="TOML file, or 'incident' for the built-in incident")
    run.add_argument("--no-supervise", action="store_true", help="no restarts after a crash")
    run.add_argument("--rate", type=float, help="background statements per second")
    run.add_argument("--dump-size", type=int, default=4 * 1024 * 1024, help="dump size in bytes")
    run.add_argument("--engines", type=int, default=1, help="process mode with N engine processes")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument(
        "--tds-port", type=int, default=0, help="TDS port on 127.0.0.1 (0: a free one; -1: none)"
    )
    plan = sub.add_parser("plan", help="print a scenario's timeline and predicted crashes")
    plan.add_argument("--scenario", default="incident")
    ns = p.parse_args(argv)
    try:
        return _plan(ns.scenario) if ns.cmd == "plan" else _run(ns)
    except AsewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
