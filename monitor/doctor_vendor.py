"""Doctor's host checks: the vendor targets take an upload, the contract, the age recipients."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from monitor.config_package import parse_recipient
from monitor.config_ship import VendorConfig
from monitor.doctor import Check, DoctorInputs
from monitor.ship_targets import ShipError, Target

__all__ = ["host_checks"]


def host_checks(inputs: DoctorInputs, *, probe_targets: bool = True) -> Iterator[Check]:
    """The targets (each probed with a small upload that is deleted again), the vendor
    section and the recipients, in that order."""
    if probe_targets:
        yield from _targets(inputs.targets, inputs.probe_timeout)
    yield from _vendor(inputs.vendor, inputs)
    if inputs.recipients is not None:
        yield _recipients(inputs.recipients)


def _targets(targets: Sequence[Target], timeout: float) -> Iterator[Check]:
    if not targets:
        yield Check(
            "vendor target",
            "",
            "fail",
            "no [[ship.target]] is configured: dumps never leave this host",
            'add a [[ship.target]] (kind = "sftp", "https" or "directory") for the vendor',
        )
        return
    for t in targets:
        name = f"target {t.name}"
        try:
            session = t.connect(timeout)
            try:
                session.probe()
            finally:
                session.close()
        except ShipError as exc:
            yield Check(name, "", "fail", exc.reason, _target_fix(exc.reason))
        else:
            yield Check(name, "", "ok", "reachable; a test upload was stored intact and deleted")


def _target_fix(reason: str) -> str:
    low = reason.lower()
    if "host key" in low or "known_hosts" in low:
        return "get the vendor's host key through a trusted channel and add it to the known_hosts file"
    if "refused (http 401" in low or "refused (http 403" in low or "login refused" in low or "token" in low:
        return "check the credentials (key file and user, or the token) with the vendor"
    if "chmod" in low:
        return "chmod 600 the key file"
    return "check the network path, firewall and proxy to the vendor; the shipper keeps retrying meanwhile"


def _vendor(vendor: VendorConfig | None, inputs: DoctorInputs) -> Iterator[Check]:
    if vendor is None:
        yield Check(
            "vendor contact",
            "",
            "warn",
            "no [vendor] section: nobody knows whom to call when it crashes",
            "add [vendor] with name, contact_email or contact_phone, customer_number, contract_id and "
            "contract_end",
        )
        return
    missing = [
        label
        for label, value in (
            ("name", vendor.name),
            ("contact_email or contact_phone", vendor.contact_email or vendor.contact_phone),
            ("customer_number", vendor.customer_number),
            ("contract_id", vendor.contract_id),
        )
        if not value.strip()
    ]
    if missing:
        yield Check(
            "vendor contact", "", "warn", "missing: " + ", ".join(missing), "fill them in under [vendor]"
        )
    else:
        who = vendor.contact_email or vendor.contact_phone
        yield Check("vendor contact", "", "ok", f"{vendor.name}, {who}, customer {vendor.customer_number}")
    end = vendor.contract_end
    if end is None:
        yield Check(
            "vendor contract", "", "warn", "no contract_end", "set contract_end = YYYY-MM-DD under [vendor]"
        )
        return
    days = (end - inputs.today).days
    if days < 0:
        yield Check(
            "vendor contract",
            "",
            "fail",
            f"contract {vendor.contract_id or '?'} ended on {end} ({-days} days ago)",
            "renew the support contract, then update contract_end",
        )
    elif days <= vendor.contract_warn_days:
        yield Check(
            "vendor contract",
            "",
            "warn",
            f"contract {vendor.contract_id or '?'} ends on {end} (in {days} days)",
            "renew the support contract before it ends",
        )
    else:
        yield Check("vendor contract", "", "ok", f"contract {vendor.contract_id} runs until {end}")


def _recipients(recipients: Sequence[str]) -> Check:
    name = "encryption recipients"
    if not recipients:
        return Check(
            name,
            "",
            "warn",
            "no age recipients: packages leave unencrypted",
            "add the vendor's age (age1...) or ssh public key as a recipient",
        )
    bad = []
    for text in recipients:
        try:
            parse_recipient(text)
        except ValueError as exc:
            bad.append(str(exc))
    if bad:
        return Check(
            name, "", "fail", "unusable: " + "; ".join(bad), "copy the recipient again from the vendor"
        )
    return Check(name, "", "ok", f"{len(recipients)} recipient(s) parse")
