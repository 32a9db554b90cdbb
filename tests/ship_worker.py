"""A shipper process for the ``kill -9`` test: ships the spool until it is killed or told to stop.

    python tests/ship_worker.py SPEC.json

SPEC holds ``state_dir``, ``spool``, ``ship`` (a ``[ship]`` table, targets included) and
``pause`` (phase name -> seconds to sleep right after that phase, to widen the window
a kill may land in: after ``renamed`` the file is in place but not yet marked verified).
Every phase is printed and flushed as ``phase<TAB>package<TAB>file<TAB>target<TAB>detail``,
and ``shipped<TAB>package`` when a package is done everywhere. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from monitor.config_ship import ShipConfig
from monitor.ship import ShippedPackage, Shipper
from monitor.ship_state import Job
from monitor.store import Store

_print_lock = threading.Lock()


def say(*fields: str) -> None:
    with _print_lock:
        sys.stdout.write("\t".join(fields) + "\n")
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    pause: dict[str, float] = spec.get("pause", {})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def phase(name: str, job: Job, detail: str) -> None:
        say(name, job.package_id, job.file, job.target, detail)
        if name in pause:
            time.sleep(pause[name])

    def shipped(p: ShippedPackage) -> None:
        say("shipped", p.package_id)

    config = ShipConfig.model_validate(spec["ship"])
    with Store.open(Path(spec["state_dir"])) as store:
        shipper = Shipper.from_config(
            store,
            config,
            Path(spec["state_dir"]),
            spool_dir=Path(spec["spool"]),
            on_phase=phase,
            on_shipped=shipped,
        )
        say("ready")
        shipper.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
