"""Wiring of shipping and doctor into the agent (issue 5): the ``shipper`` thread (with one
``ship-<target>`` thread per target under it) and the ``doctor`` thread.

The agent calls :func:`start_shipping` once in ``start()``; both threads stop with the
agent's stop event. When a package is verified on every target, its dumps are marked
shipped for retention (:func:`monitor.dumps.mark_shipped_sha256`, idempotent), so their
files may be evicted from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from monitor.config_package import package_config_of
from monitor.config_ship import ShipConfig, VendorConfig
from monitor.doctor_facts import DoctorLoop, doctor_inputs
from monitor.dumps import mark_shipped_sha256
from monitor.ship import ShippedPackage, Shipper

if TYPE_CHECKING:
    from monitor.agent import Agent

__all__ = ["start_shipping"]

log = logging.getLogger("asewatch.agent")


def start_shipping(
    agent: Agent, *, on_shipped: Callable[[ShippedPackage], None] | None = None
) -> Shipper | None:
    """Spawn the shipper (when ``[ship]`` is enabled and names a target) and the doctor
    loop in named threads of ``agent``; return the shipper (for ``package_ready``).
    ``on_shipped`` replaces the default (marking the package's dumps shipped)."""
    ship: ShipConfig = getattr(agent.config, "ship", None) or ShipConfig()
    vendor: VendorConfig | None = getattr(agent.config, "vendor", None)
    recipients = package_config_of(agent.config).encryption.recipients
    contract_end = vendor.contract_end if vendor is not None else None
    if on_shipped is None:

        def on_shipped(p: ShippedPackage) -> None:
            mark_shipped_sha256(agent.store, p.dump_sha256s)

    shipper = None
    if ship.enabled and ship.targets:
        shipper = Shipper.from_config(
            agent.store, ship, agent.state_dir, contract_end=contract_end, on_shipped=on_shipped
        )
        agent.spawn("shipper", lambda: shipper.run(agent.stopping))
    elif ship.enabled:
        log.warning("[ship] names no target: packages stay in the spool (asewatch doctor says so too)")
    doctor = DoctorLoop(
        agent.store,
        lambda: doctor_inputs(agent.config.servers, agent.store, ship, vendor, recipients),
        interval=ship.doctor_interval,
    )

    def run_doctor() -> None:
        # The first run waits a little: the settings collector reads the dump conditions first.
        if not agent.stopping.wait(min(30.0, ship.doctor_interval)):
            doctor.run(agent.stopping)

    agent.spawn("doctor", run_doctor)
    return shipper
