"""The vendor package's ``manifest.json``: its documented schema, a validator, and ``README.txt``.

Schema ``asewatch.package/1``. Every field (``a.b`` is key ``b`` inside object ``a``;
``a[].b`` is key ``b`` of each element of array ``a``); types are JSON types, ``/null``
where the fact may be unknown. Every field is always present.

| field | type | meaning |
|---|---|---|
| schema | string | ``asewatch.package/1`` |
| package_id | string | the package folder's name |
| created | string | when the package was built, UTC, ISO 8601 (``2024-03-14T10:15:02Z``) |
| asewatch_version | string | the asewatch that built it |
| sealed | string/null | always null here (see the sealed manifest below) |
| server | object | the ASE server |
| server.name | string | its name (``-s``) |
| server.host | string | the host it runs on |
| host | object | the host, when the package was built |
| host.hostname | string | host name |
| host.uname | object | ``system, node, release, version, machine`` as uname gives them |
| host.distribution | object | ``pretty_name, name, id, version_id`` from /etc/os-release (those present) |
| host.cpu_count | integer/null | logical CPUs |
| host.memory_bytes | integer/null | total memory |
| host.python | string | Python version of the agent |
| ase | object | the build that crashed |
| ase.version | string/null | the ``@@version`` string of the boot before the crash |
| ase.release | string/null | ``16.0`` |
| ase.service_pack | string/null | ``04`` of ``SP04`` |
| ase.patch_level | string/null | ``03`` of ``PL03`` |
| ase.ebf | string/null | the EBF number |
| ase.architecture | string/null | ``x86_64`` |
| ase.os | string/null | the OS the build is for |
| ase.build | string/null | build id and number (``ase160sp04pl03x/3541``) |
| ase.bits | integer/null | 32 or 64 |
| ase.build_type | string/null | ``FBO``, ``OPT`` or ``DBG`` |
| ase.build_date | string/null | the build's date as ASE prints it |
| ase.kernel_mode | string/null | ``threaded`` or ``process`` |
| ase.boot_time | string/null | local time of the boot before the crash (ISO 8601) |
| crash | object | the crash record (``asewatch show``) |
| crash.id | integer | its id in the agent's store |
| crash.key | string | its identity (server + errorlog block or process exit) |
| crash.time | string/null | local time of the crash block (ISO 8601, no zone, as ASE logs) |
| crash.kind | string/null | ``signal``, ``timeslice``, ``other`` or ``unclean`` (no block) |
| crash.signal | integer/null | the signal number |
| crash.signature | string/null | the crash signature (same bug, same signature) |
| crash.state | string/null | ``crashed`` (server down) or ``task`` (server survived) |
| crash.server_terminated | boolean/null | the server went down with it |
| crash.stack | string/null | ``complete`` (the block reached ``end of stack trace``) or ``truncated`` |
| crash.spid | integer/null | the crashing task |
| crash.kpid | integer/null | its kernel process id |
| crash.suid | integer/null | its server user id |
| crash.family | integer/null | parent spid of a parallel worker (0: not a worker) |
| crash.login | string/null | login of the session |
| crash.host | string/null | client host name |
| crash.program | string/null | client program name |
| crash.procedure | string/null | the stored procedure it was in |
| crash.sql | string/null | the SQL causing the error, redacted to its shape |
| crash.sql_text | array | the ``SQL Text:`` lines, redacted to their shape |
| crash.statement_number | integer/null | statement number in the batch or procedure |
| crash.line_number | integer/null | line number in the batch or procedure |
| crash.address_function | string/null | the function of the faulting address |
| crash.frames | array | stack frames, innermost first, offsets removed |
| crash.exit_pid | integer/null | the dataserver process that exited with it |
| crash.exit_time | number/null | when it exited, POSIX seconds |
| errorlog | object | the errorlog |
| errorlog.path | string/null | the errorlog file on the host |
| errorlog.excerpt | object/null | the lines around the crash block |
| errorlog.excerpt.file | string | ``errorlog/excerpt.log`` |
| errorlog.excerpt.start_offset | integer | byte offset of its first line in the errorlog |
| errorlog.excerpt.end_offset | integer | byte offset after its last line |
| errorlog.excerpt.lines_before | integer | lines asked for before the block |
| errorlog.excerpt.lines_after | integer | lines asked for after the block |
| errorlog.since_boot | object/null | the log of the run that crashed, from its boot |
| errorlog.since_boot.file | string | ``errorlog/since-boot.log`` |
| errorlog.since_boot.start_offset | integer | byte offset of the boot (0: the file's start) |
| errorlog.since_boot.end_offset | integer | byte offset of the next boot, or the end of the file |
| errorlog.since_boot.cut_bytes | integer | bytes left out in the middle (over ``errorlog_max_bytes``) |
| errorlog.since_boot.boot_time | string/null | local time of that boot |
| flight_recorder | object/null | what ran before the crash (the frozen activity) |
| flight_recorder.file | string | ``flight-recorder.json`` |
| flight_recorder.complete | boolean | frozen and settled after the crash |
| flight_recorder.truncated | boolean | rows were capped |
| flight_recorder.statements | integer | statements in the file |
| suspects | object/null | the ranked suspects of the crash's group (procedures, flags, settings, changes) |
| suspects.file | string | ``suspects.json``: the group as ``asewatch suspects --json`` gives it |
| suspects.crashes | integer | crashes in the group when ranked |
| suspects.top | array | the three best suspects, as ``kind name`` |
| configuration | object | the server's setup at the crash |
| configuration.settings | string/null | file with sp_configure / .cfg values at the crash |
| configuration.cfg_file | string/null | the server's ``.cfg`` file as it is when packaged (redacted) |
| configuration.dump_conditions | string/null | ``dump on conditions`` and sp_shmdumpconfig in one line |
| configuration.dump_conditions_file | string/null | file with the sp_shmdumpconfig rows |
| configuration.flags | string/null | file with the application feature flags at the crash |
| configuration.changes | string/null | file with the change ledger |
| configuration.changes_days | number | days of changes before the crash in that file |
| dumps | array | the memory dumps, one object each |
| dumps[].name | string | file in the package (``dumps/....zst`` or ``.zst.age``) |
| dumps[].source_path | string | the dump file on the host |
| dumps[].state | string | ``complete``, ``truncated``, ``writing``, ``unreadable`` or ``unknown`` |
| dumps[].truncated | boolean | the dump is known to be cut short |
| dumps[].found_by | string | how it was tied to the crash |
| dumps[].original_bytes | integer | size of the dump |
| dumps[].original_sha256 | string | SHA-256 of the dump as read for the package |
| dumps[].recorded_sha256 | string/null | SHA-256 recorded when the dump was finished |
| dumps[].compression | string | ``zstd`` |
| dumps[].compression_level | integer | zstd level |
| dumps[].compressed_bytes | integer | size of the zstd stream |
| dumps[].compressed_sha256 | string | SHA-256 of the zstd stream (before encryption) |
| dumps[].stored_bytes | integer | size of the file in the package |
| dumps[].stored_sha256 | string | SHA-256 of the file in the package |
| dumps[].encrypted | boolean | sealed with age |
| dump_notes | array | how the dumps were found, and whether retention was kept off them |
| encryption | object | how the package is sealed |
| encryption.scope | string | ``none``, ``dumps`` or ``package`` |
| encryption.recipients | array | age/SSH public keys that can open it (never a private key) |
| encryption.files | array | the files that are encrypted |
| vendor | object | the support path from ``[vendor]`` |
| vendor.name | string/null | the vendor |
| vendor.customer_number | string/null | customer number |
| vendor.contract_id | string/null | support contract |
| vendor.contract_end | string/null | end of the contract |
| vendor.contact_name | string/null | who at this site answers |
| vendor.contact_email | string/null | their e-mail |
| vendor.contact_phone | string/null | their phone |
| vendor.support_url | string/null | the vendor's support site |
| vendor.case_number | string/null | the vendor's case, when known |
| vendor.missing | array | support details the config lacks |
| redaction | object | what was removed from everything but the dumps |
| redaction.file | string | ``redaction.json``: kinds, counts and where; never the values |
| redaction.totals | object | replacements per kind |
| unavailable | object | each fact the package lacks, with the reason |
| files | array | every file but ``manifest.json`` and ``SHA256SUMS`` |
| files[].name | string | path in the package, ``/``-separated |
| files[].size | integer | bytes |
| files[].sha256 | string | SHA-256 |
| files[].kind | string | ``metadata`` (ships first) or ``dump`` |

A package sealed whole (``[package.encryption] scope = "package"``) holds only
``package.tar.age`` (the package above, as a tar, encrypted), ``manifest.json`` and
``SHA256SUMS``; its manifest has the fields ``schema, package_id, created,
asewatch_version, server, encryption, files`` as above, ``dumps`` with only
``original_bytes, original_sha256, recorded_sha256`` of each dump inside (so a shipper can
record which dumps the vendor has), and ``sealed`` names the archive.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA = "asewatch.package/1"
_ROW = re.compile(r"^\| (\S+) \| (\S+) \| (.+) \|$")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}
SEALED_FIELDS = (
    "schema", "package_id", "created", "asewatch_version", "sealed", "server", "encryption", "files", "dumps",
)  # fmt: skip
SEALED_DUMP_FIELDS = ("dumps[].original_bytes", "dumps[].original_sha256", "dumps[].recorded_sha256")


def fields() -> dict[str, tuple[str, str]]:
    """The documented fields: ``path -> (type, meaning)``, read from this module's table."""
    out: dict[str, tuple[str, str]] = {}
    for line in (__doc__ or "").splitlines():
        m = _ROW.match(line)
        if m and m.group(1) not in ("field", "---"):
            out[m.group(1)] = (m.group(2), m.group(3))
    return out


def schema_table() -> str:
    """The Markdown table of the fields (for the README)."""
    return "\n".join(line for line in (__doc__ or "").splitlines() if line.startswith("|"))


def validate_manifest(doc: Any) -> list[str]:
    """Problems of ``doc`` against the documented schema (empty: valid): missing keys and wrong
    types, each naming the field.

    >>> validate_manifest({"schema": SCHEMA})[:1]
    ['package_id: missing']
    """
    if not isinstance(doc, dict):
        return ["the manifest is not a JSON object"]
    spec = fields()
    if doc.get("sealed") is not None:
        spec = {
            k: v
            for k, v in spec.items()
            if k.split(".")[0].split("[")[0] in SEALED_FIELDS
            and (not k.startswith("dumps[].") or k in SEALED_DUMP_FIELDS)
        }
    problems: list[str] = []
    for path, (kind, _) in spec.items():
        for where, value, present in _values(doc, path):
            if not present:
                problems.append(f"{where}: missing")
            elif not _is(value, kind):
                problems.append(f"{where}: {type(value).__name__}, not {kind}")
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema: {doc.get('schema')!r}, not {SCHEMA!r}")
    return problems


def _is(value: Any, kind: str) -> bool:
    for name in kind.split("/"):
        if name == "null" and value is None:
            return True
        t = _TYPES.get(name)
        if t is not None and isinstance(value, t) and not (isinstance(value, bool) and name != "boolean"):
            return True
    return False


def _values(doc: dict[str, Any], path: str) -> list[tuple[str, Any, bool]]:
    """Every ``(where, value, present)`` the path names (``a[].b`` fans out over array ``a``)."""
    current: list[tuple[str, Any]] = [("", doc)]
    out: list[tuple[str, Any, bool]] = []
    parts = path.split(".")
    for i, part in enumerate(parts):
        fan = part.endswith("[]")
        key = part.removesuffix("[]")
        nxt: list[tuple[str, Any]] = []
        for where, obj in current:
            here = f"{where}.{key}" if where else key
            if obj is None:
                continue  # under a null object (its own type says whether null is allowed)
            if not isinstance(obj, dict) or key not in obj:
                out.append((here, None, False))
                continue
            value = obj[key]
            if i == len(parts) - 1:
                out.append((here, value, True))
            elif fan:
                nxt += [(f"{here}[{j}]", v) for j, v in enumerate(value if isinstance(value, list) else [])]
            else:
                nxt.append((here, value))
        current = nxt
    return out


def readme(m: dict[str, Any]) -> str:
    """``README.txt`` for the vendor's engineer, from the (already redacted) manifest."""
    c, a, v, enc = m["crash"], m["ase"], m["vendor"], m["encryption"]
    contact = ", ".join(x for x in (v["contact_name"], v["contact_email"], v["contact_phone"]) if x)
    title = f"asewatch crash package {m['package_id']}"
    host = m["host"]
    lines = [
        title,
        "=" * len(title),
        "",
        (
            f"Server {m['server']['name']} on {m['server']['host']}; built {m['created']} "
            f"by asewatch {m['asewatch_version']}."
        ),
        (
            f"Vendor case: {v['case_number'] or 'not yet opened'}; customer number: "
            f"{v['customer_number'] or '-'}; contract: {v['contract_id'] or '-'}."
        ),
        f"Site contact: {contact or '-'}",
        "",
        "The crash",
        "---------",
        f"time (server local): {c['time'] or '-'}   kind: {c['kind'] or '-'}   signal: {c['signal']}",
        (
            f"signature: {c['signature'] or '-'}   server went down: {c['server_terminated']}   "
            f"stack trace: {c['stack'] or '-'}"
        ),
        (
            f"spid {c['spid']} (family {c['family']}), kpid {c['kpid']}, suid {c['suid']}, "
            f"login {c['login']}, host {c['host']}, program {c['program']}"
        ),
        f"procedure: {c['procedure'] or '-'}",
        f"SQL (literals replaced by ?): {c['sql'] or '-'}",
        "frames: " + (" <- ".join(c["frames"][:12]) or "-"),
        "",
        f"ASE build: {a['version'] or 'unknown'}",
        f"EBF {a['ebf'] or '-'}, kernel mode {a['kernel_mode'] or 'unknown'}, booted {a['boot_time'] or '-'}",
        (
            f"Host: {host['distribution'].get('pretty_name', '-')}, kernel {host['uname']['release']}, "
            f"{host['cpu_count']} CPUs, {host['memory_bytes']} bytes of memory"
        ),
        "",
        "What is in here",
        "---------------",
    ]
    lines += [f"  {f['name']:<40} {f['size']:>14} bytes  {f['kind']}" for f in m["files"]]
    lines += [f"  (not available) {k}: {why}" for k, why in sorted(m["unavailable"].items())]
    lines += ["", "Checking and opening it", "-----------------------", "  sha256sum -c SHA256SUMS"]
    for d in m["dumps"]:
        name, original = d["name"], d["name"].rsplit("/", 1)[-1].removesuffix(".age").removesuffix(".zst")
        if d["encrypted"]:
            lines.append(f"  age -d -i YOUR_KEY {name} | zstd -d -o {original}")
        else:
            lines.append(f"  zstd -d {name} -o {original}")
        lines.append(f"  sha256sum {original}   # must be {d['original_sha256']}")
        if d["truncated"]:
            lines.append(f"  NOTE: {original} is TRUNCATED: the server died before the dump was complete.")
    if enc["recipients"]:
        lines.append(f"  encrypted with age to: {', '.join(enc['recipients'])}")
    lines += [
        "",
        "Privacy",
        "-------",
        "Everything except the memory dumps is redacted: personal identity numbers, SQL literals and",
        "configured patterns are replaced (redaction.json says which kinds, how many and where; never",
        "the values). The dumps are memory images and hold patient data: handle them under the data",
        "processing agreement, and delete them when the case is closed.",
        "",
    ]
    return "\n".join(lines)
