"""The bundle's repository address, in one place, and the notebook cells generated from it.

Every notebook opens with a title cell holding an "Open in Colab" badge and a guarded Colab
setup cell; both are generated here from `REPO_URL` (a fork sets ENDOVAE_REPO_URL and runs
`python -m helpers.colab --write`). `python -m helpers.colab` checks that they are in sync.

The badge is an HTML link, not a markdown image: LaTeX cannot include a remote SVG, so a
markdown badge breaks `jupyter nbconvert --to pdf` of a single notebook; pandoc drops raw HTML.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

REPO_URL = "https://github.com/endovae-bundle/endovae-report"
REPO_ENV = "ENDOVAE_REPO_URL"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_LINE = re.compile(r"^.*colab-badge\.svg.*$", re.M)
SETUP_MARK = "# Colab only:"
COLAB_DIR = "/content/endovae-report"


def repo_url() -> str:
    """The repository address: env ENDOVAE_REPO_URL (a fork), else REPO_URL."""
    return (os.environ.get(REPO_ENV) or REPO_URL).strip().rstrip("/")


def colab_link(notebook: str) -> str:
    """The Colab address that opens notebooks/<notebook> from the repository."""
    path = re.sub(r"^https://github\.com/", "", repo_url()).removesuffix(".git")
    return f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}"


def badge(notebook: str) -> str:
    """The "Open in Colab" badge as one line of HTML."""
    return f'<a href="{colab_link(notebook)}"><img src="{BADGE_SVG}" alt="Open In Colab"/></a>'


def setup_source() -> str:
    """The guarded Colab setup cell: clone and install the bundle, or say what to do instead."""
    return f'''{SETUP_MARK} install the bundle (a fork: set {REPO_ENV}); elsewhere this does nothing.
import os
import sys

if "google.colab" in sys.modules:
    url = os.environ.get("{REPO_ENV}", "{repo_url()}")
    here = "{COLAB_DIR}"
    if not os.path.isdir(here) and os.system(f"git clone -q --depth 1 {{url}} {{here}}"):
        raise SystemExit(
            f"Could not clone {{url}}: set {REPO_ENV} to your copy's address, "
            f"or upload the bundle's folder to {{here}}, then run this cell again."
        )
    %pip install -q -e {{here}}
    %cd {{here}}/notebooks'''


def synced_cells(nb: dict, name: str) -> dict:
    """The notebook with its badge line and Colab setup cell regenerated."""
    cells = nb["cells"]
    title = "".join(cells[0]["source"])
    cells[0]["source"] = BADGE_LINE.sub(badge(name), title, count=1).splitlines(keepends=True)
    setup = next(c for c in cells if "".join(c["source"]).startswith(SETUP_MARK))
    setup["source"] = setup_source().splitlines(keepends=True)
    return nb


def sync(folder: Path, write: bool) -> list[str]:
    """Names of the notebooks whose generated cells differ (rewritten when `write`)."""
    stale = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        before = json.dumps(nb, sort_keys=True)
        nb = synced_cells(nb, path.name)
        if json.dumps(nb, sort_keys=True) != before:
            stale.append(path.name)
            if write:
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite (--write) the generated cells of every notebook."""
    parser = argparse.ArgumentParser(prog="python -m helpers.colab", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the generated cells")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    stale = sync(folder, args.write)
    for name in stale:
        print(f"{'rewrote' if args.write else 'out of sync'}: {name}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
