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
