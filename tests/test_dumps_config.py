"""The ``[dumps]`` section: defaults, refusals with key and reason, and the folders it yields."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.config_dumps import CORE_PATTERNS, DumpsConfig, unknown_dump_servers
from monitor.dumps import watched_folders

pytestmark = pytest.mark.unit

TOML = """
settle_seconds = 2
keep_first = 1
keep_last = 2
max_bytes = 1000000
expected_bytes = { CLINIC1 = 4194304 }

[[folder]]
path = "/var/lib/systemd/coredump"

[[folder]]
path = "cores"
server = "CLINIC1"
patterns = ["core.*"]
"""


def test_a_dumps_section_from_toml_with_relative_paths_from_the_config_folder(tmp_path: Path) -> None:
    cfg = DumpsConfig.model_validate(tomllib.loads(TOML), context={"base": tmp_path})
    assert cfg.settle_seconds == 2.0 and (cfg.keep_first, cfg.keep_last) == (1, 2)
    assert cfg.folders[0].patterns == CORE_PATTERNS and cfg.folders[0].server is None
    assert cfg.folders[1].path == tmp_path / "cores" and cfg.folders[1].patterns == ("core.*",)
    assert cfg.expected("CLINIC1") == 4194304 and cfg.expected("OTHER") is None
    assert hash(cfg) == hash(DumpsConfig.model_validate(tomllib.loads(TOML), context={"base": tmp_path}))
    assert unknown_dump_servers(cfg, ("CLINIC1",)) == []
    assert unknown_dump_servers(cfg, ("OTHER",)) == [
        ("dumps.expected_bytes.CLINIC1", "no [[server]] named 'CLINIC1'"),
        ("dumps.folder[1].server", "no [[server]] named 'CLINIC1'"),
    ]


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"folder": [{"path": "/dumps/../etc"}]}, "folder.0.path"),
        ({"patterns": ["../*"]}, "patterns.0"),
        ({"folder": [{"path": "/d", "patterns": ["a/b"]}]}, "folder.0.patterns.0"),
        ({"settle_seconds": 0}, "settle_seconds"),
        ({"keep_first": -1}, "keep_first"),
        ({"max_bytes": "1G"}, "max_bytes"),
        ({"retention": 3}, "retention"),
        ({"folder": [{"path": "/d"}, {"path": "/d"}]}, ""),
    ],
)
def test_bad_values_are_refused_naming_the_key(doc: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        DumpsConfig.model_validate(doc)
    locs = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert where in locs


def test_server_dump_dirs_match_everything_but_ases_own_files_and_folders_are_watched_once(
    tmp_path: Path,
) -> None:
    cfg = DumpsConfig.model_validate(
        {"expected_bytes": {"A": 10}, "folder": [{"path": str(tmp_path / "a")}, {"path": "/cores"}]}
    )
    folders = watched_folders([("A", [tmp_path / "a"]), ("B", [tmp_path / "b"])], cfg)
    assert [(f.path, f.server, f.expected_bytes) for f in folders] == [
        (tmp_path / "a", "A", 10), (tmp_path / "b", "B", None), (Path("/cores"), None, None),
    ]  # fmt: skip
    shm = folders[0]
    assert shm.matches("CLINIC1_20240101_120000.dmp") and shm.matches("anything")
    for name in ("CLINIC1.krg", "CLINIC1.srg0", "CLINIC1.cfg", "CLINIC1.log", ".partial"):
        assert not shm.matches(name)
    core = folders[2]
    assert core.matches("core.1234") and core.matches("core") and not core.matches("notes.txt")
