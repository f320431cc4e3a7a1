"""Kubernetes resource quantities: parsing and comparison.

The configuration keeps quantities as the strings a Kubernetes user writes
("400Mi", "100m", "3Gi"), so that the synthesized YAML shows them exactly as
configured. They are validated here so that a typo such as "3GB" fails at
synth time with a message that names the field, not at `kubectl apply` time.
"""

from __future__ import annotations

import re
from decimal import Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}

_MEMORY_RE = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_CPU_RE = re.compile(r"^(?P<num>[0-9]+(\.[0-9]{1,3})?)(?P<unit>m)?$")

MEMORY_FORMAT = "a number with an optional unit Ki, Mi, Gi, Ti, Pi, k, M, G, T or P (e.g. 512Mi, 3Gi)"
CPU_FORMAT = "millicores like 250m, or cores like 1 or 0.5"


def parse_memory(value: str) -> int:
    """Bytes in a memory or storage quantity; ValueError with the allowed form otherwise."""
    match = _MEMORY_RE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a memory quantity: use {MEMORY_FORMAT}")
    unit = match.group("unit") or ""
    factor = _BINARY.get(unit) or _DECIMAL.get(unit) or 1
    return int(Decimal(match.group("num")) * factor)


def parse_cpu(value: str) -> int:
    """Millicores in a CPU quantity; ValueError with the allowed form otherwise."""
    match = _CPU_RE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a CPU quantity: use {CPU_FORMAT}")
    if match.group("unit") == "m":
        if "." in match.group("num"):
            raise ValueError(f"{value!r} is not a CPU quantity: millicores are whole numbers")
        return int(match.group("num"))
    return int(Decimal(match.group("num")) * 1000)


def format_mebibytes(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.0f}Mi"
