"""The short report printed after a synth: what was made and what to run next."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from constructs.config import StackConfig


def summary(config: StackConfig, outdir: Path) -> str:
    kinds: Counter[str] = Counter()
    images: set[str] = set()
    for path in sorted(outdir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                kinds[doc["kind"]] += 1
                images.update(_images(doc))
    lines = [f"synthesized {sum(kinds.values())} objects into {outdir}:"]
    lines += [f"  {count:3d} {kind}" for kind, count in sorted(kinds.items())]
    lines.append("images: " + ", ".join(sorted(images)))
    lines.append(f"next: kubectl apply -f {outdir.name}/ && kubectl -n {config.namespace} get pods -w")
    return "\n".join(lines)


def _images(obj: object) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "image" and isinstance(value, str):
                found.add(value)
            else:
                found |= _images(value)
    elif isinstance(obj, list):
        for item in obj:
            found |= _images(item)
    return found
