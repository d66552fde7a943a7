"""Write an offline artifacts directory of the add-on STAND-INS (tests/doubles/addons.py) with its SHA256SUMS.

Usage: make_artifacts.py DIR. Only for the molecule scenarios of roles/cni and roles/dashboard.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def main(dest: Path) -> None:
    spec = importlib.util.spec_from_file_location("addons", ROOT / "tests/doubles/addons.py")
    assert spec is not None and spec.loader is not None
    addons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(addons)
    files: dict[str, bytes] = addons.addon_files()
    for rel, data in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in sorted(files.items()))
    (dest / "SHA256SUMS").write_text(sums)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
