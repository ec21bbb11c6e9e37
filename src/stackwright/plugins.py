"""A system's own scenarios, discovered next to its ``system.yaml``: the core names no particular system.

A system folder may hold three plug-in modules; each is optional and the core loads it by file name:

``demo.py``
    ``async def run(ctx: stackwright.local.demokit.DemoContext) -> bool`` — a scenario against the running
    system (``stackwright demo SYSTEM``); True when it passed. ``SIZE_HELP: str`` says what ``--size``
    counts for this demo, ``DEFAULT_SIZE: int`` its default (100 when absent).
``bench.py``
    ``SCENARIOS: tuple[str, ...]`` and ``def run(spec_path, options, reporter) -> dict`` (the results
    document, see :mod:`stackwright.bench.results`); optionally ``OPT_IN: tuple[str, ...]``, scenarios run
    only when ``--only`` names them (e.g. ones that need a tool CI does not install),
    ``targets(doc) -> list[dict]``, ``per_replica(doc, system) -> dict[str, dict]`` (rows keyed by service
    name), ``markdown(doc) -> list[str]`` and ``summary(doc) -> list[str]`` for what the generic table and
    summary do not show.
``drills.py``
    ``Drill``, a class following :class:`stackwright.local.chaos.Scenario` — the fault drills of
    ``stackwright chaos SYSTEM`` (``FAULTS``, ``run``, optionally ``poison``); and/or ``RegionLoad``, the
    system's own writes for ``stackwright drill region-failover SYSTEM`` (see
    :class:`stackwright.local.region_outage.RegionLoad`).

A plug-in imports what it needs from ``stackwright`` (``bench``, ``local.demokit``, ``local.chaos``), never
the other way round.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal

from .spec import System

Kind = Literal["demo", "bench", "drills"]
KINDS: tuple[Kind, ...] = ("demo", "bench", "drills")


class PluginMissing(LookupError):
    """The system provides no plug-in of this kind; ``str()`` says which file would."""

    def __init__(self, system: System, kind: Kind) -> None:
        self.path = plugin_path(system, kind)
        super().__init__(f"{system.name} provides no {kind} ({self.path} does not exist)")


def plugin_path(system: System, kind: Kind) -> Path:
    """Where ``kind``'s module of ``system`` lives (``<system folder>/<kind>.py``)."""
    return system.base_dir / f"{kind}.py"


def has_plugin(system: System, kind: Kind) -> bool:
    """True when the system folder holds a ``<kind>.py``."""
    return plugin_path(system, kind).is_file()


def load_plugin(system: System, kind: Kind) -> ModuleType:
    """Import ``<system folder>/<kind>.py`` (once per process) and return the module.

    Raises :class:`PluginMissing` when the file does not exist; errors inside the module propagate.
    """
    path = plugin_path(system, kind)
    if not path.is_file():
        raise PluginMissing(system, kind)
    return _load(f"stackwright_systems.{_identifier(system.name)}.{kind}", path)


def load_helper(plugin_file: str, module: str) -> ModuleType:
    """Import ``<module>.py`` that sits next to a plug-in (a system's own helper shared by its demo, bench
    and drills), once per process, under a name private to that system folder. ``plugin_file`` is the
    calling plug-in's ``__file__``. Raises FileNotFoundError when the file does not exist."""
    path = Path(plugin_file).resolve().parent / f"{module}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    return _load(f"stackwright_systems.{_identifier(path.parent.name)}.{_identifier(module)}", path)


def _load(name: str, path: Path) -> ModuleType:
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")) == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running so dataclasses and pickling (load-generator processes) can find it by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
