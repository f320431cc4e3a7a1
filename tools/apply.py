#!/usr/bin/env python3
"""`make apply`: apply dist/ with kubectl, delete what left it, record what was applied.

    .venv/bin/python tools/apply.py [DIST] [--context CTX] [--delete-claim NAME] [--only database]

See app/applier.py for what it does, and docs/operations.md, "Applying: make apply".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from app.applier import main  # noqa: E402  (needs the path above)

if __name__ == "__main__":
    sys.exit(main(project_dir=PROJECT_DIR))
