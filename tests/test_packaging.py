"""What ``pip install .`` ships: every package of the source tree."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_setup_cfg() -> None:
    """setup.cfg names each folder of guessgame/ that holds code, or a wheel would lack it."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "guessgame").rglob("__init__.py")
    }
    assert on_disk, "no package found under guessgame/"
    assert on_disk <= listed, sorted(on_disk - listed)


def test_license_file_matches_setup_cfg() -> None:
    """The LICENSE file is the license setup.cfg declares."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    declared = config["metadata"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
