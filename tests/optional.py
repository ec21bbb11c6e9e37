"""Gate test modules on an optional part of stackwright (an extra of pyproject.toml).

``pip install -e ".[test]"`` installs every extra, so these gates only skip when someone installed less.
Under CI (``CI`` set) a missing extra is an error instead: CI must never turn green by skipping.
"""

from __future__ import annotations

import os

import pytest

from stackwright.extras import install_command, missing_modules


def require_extra(extra: str) -> None:
    """Skip the calling test module (at import) unless ``extra`` is installed; fail instead under CI."""
    missing = missing_modules(extra)
    if not missing:
        return
    reason = f"the '{extra}' extra is not installed ({', '.join(missing)}): {install_command(extra)}"
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run every test, but {reason}")
    pytest.skip(reason, allow_module_level=True)


#: Debian's packages (``apt-get install chromium chromium-driver``); the browser tests drive them with Selenium.
CHROMIUM = ("chromium", "chromedriver")


def require_chromium() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver for a real-browser test; skip the calling test when
    either (or selenium) is missing, fail instead under CI (``.ci/run`` installs them)."""
    import importlib.util
    import shutil

    found = {name: shutil.which(name) for name in CHROMIUM}
    missing = [name for name, path in found.items() if path is None]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (the [test] extra)")
    if not missing:
        return found["chromium"] or "", found["chromedriver"] or ""
    reason = (f"the browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver; "
              f'pip install -e ".[test]"')
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run every test, but {reason}")
    pytest.skip(reason)
