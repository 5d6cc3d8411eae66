"""Stored notebooks carry no outputs and keep their `parameters` tag.

`python -m pmlm_lib.workbench.notebook_hygiene --strip notebooks/*.ipynb` removes outputs and execution
counts in place (the cell tags stay: some strippers delete metadata, and with it papermill's
`parameters` tag); `--check` lists what is wrong and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def problems(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    found = []
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells):
        found.append(f"{path}: no cell tagged 'parameters'")
    if any(c.get("outputs") or c.get("execution_count") for c in cells if c.get("cell_type") == "code"):
        found.append(f"{path}: stored with outputs (run: make strip)")
    return found


def strip(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("papermill", None)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strip", action="store_true", help="remove outputs in place")
    parser.add_argument("--check", action="store_true", help="report notebooks with outputs or no parameters cell")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.strip:
        for p in args.paths:
            if strip(p):
                print(f"stripped {p}")
    found = [msg for p in args.paths for msg in problems(p)]
    print("\n".join(found) if found else "notebooks are clean")
    return 1 if found and (args.check or args.strip) else 0


if __name__ == "__main__":
    sys.exit(main())
