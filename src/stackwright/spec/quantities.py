"""Kubernetes-style quantities (``250m``, ``512Mi``) and durations (``30s``, ``5m``)."""

from __future__ import annotations

import re

_MEM_UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024,
              "K": 1000 / 1024**2, "M": 1000**2 / 1024**2, "G": 1000**3 / 1024**2, "T": 1000**4 / 1024**2}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def cpu_millis(value: str | int | float) -> int:
    """CPU quantity to millicores: ``"250m"`` -> 250, ``"2"`` -> 2000, ``0.5`` -> 500."""
    text = str(value).strip()
    if text.endswith("m"):
        return int(float(text[:-1]))
    return round(float(text) * 1000)


def memory_mib(value: str | int) -> float:
    """Memory quantity to MiB: ``"512Mi"`` -> 512, ``"2Gi"`` -> 2048."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", str(value).strip())
    if not match:
        raise ValueError(f"not a memory quantity: {value!r} (use e.g. 256Mi or 2Gi)")
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        return number / 1024**2
    return number * _MEM_UNITS[unit]


def bytes_size(value: str | int) -> int:
    """Byte size such as ``"1MiB"``, ``"10MB"`` or ``1048576`` to bytes."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?", text)
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 1MiB or 512KB)")
    factors = {None: 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
               "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    return int(float(match.group(1)) * factors[match.group(2)])


def seconds(value: str | int | float) -> float:
    """Duration to seconds: ``"30s"`` -> 30, ``"5m"`` -> 300, ``45`` -> 45."""
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", value.strip())
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
