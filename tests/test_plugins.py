"""Plug-ins and their helper modules are loaded from the system folder, once per process, under names
private to that folder (two systems' ``kit.py`` never collide)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackwright.plugins import PluginMissing, load_helper, load_plugin
from stackwright.spec import load_system

REPO = Path(__file__).resolve().parents[1]


def _system(folder: Path, name: str, kit_value: int) -> Path:
    (folder / "migrations").mkdir(parents=True)
    (folder / "system.yaml").write_text((REPO / "systems" / "fastapi-app" / "system.yaml").read_text()
                                        .replace("name: fastapi-app", f"name: {name}", 1))
    (folder / "kit.py").write_text(f"VALUE = {kit_value}\n")
    (folder / "demo.py").write_text("from stackwright.plugins import load_helper\n"
                                    "KIT = load_helper(__file__, 'kit')\n")
    return folder / "system.yaml"


def test_helpers_next_to_plugins_are_private_to_their_system(tmp_path: Path) -> None:
    one = load_system(_system(tmp_path / "one", "one", 1))
    two = load_system(_system(tmp_path / "two", "two", 2))
    assert load_plugin(one, "demo").KIT.VALUE == 1
    assert load_plugin(two, "demo").KIT.VALUE == 2
    assert load_helper(str(tmp_path / "one" / "demo.py"), "kit") is load_plugin(one, "demo").KIT
    with pytest.raises(FileNotFoundError):
        load_helper(str(tmp_path / "one" / "demo.py"), "absent")
    with pytest.raises(PluginMissing, match="provides no bench"):
        load_plugin(one, "bench")
