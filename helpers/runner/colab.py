"""The bundle's repository address (if it has one) and the notebook cells generated from it.

Every notebook opens with a title cell and a guarded Colab setup cell, both generated here.
The bundle ships without a repository address (`REPO_URL = ""`): the title cells carry no badge
and the setup cell finds the bundle's own files on Colab (/content/endovae-report, then
My Drive/endovae-report, then an uploaded zip). A fork that publishes the bundle runs
`python -m helpers.colab --write --repo URL` (stored below; env ENDOVAE_REPO_URL overrides it),
which adds an "Open in Colab" badge to every title cell (GitHub addresses) and a `git clone` step
to every setup cell. `python -m helpers.colab` checks that the notebooks are in sync.

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

from helpers.core.atomic import atomic_write_text, one_line

REPO_URL = ""  # no published repository; `--write --repo URL` stores one here
REPO_ENV = "ENDOVAE_REPO_URL"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_LINE = re.compile(r"^.*colab-badge\.svg.*$")
SETUP_MARK = "# Colab only:"
HOME = "/content"  # Colab's working folder; the setup cell's only absolute path
BUNDLE_MARK = "helpers/colab.py"  # a folder holding this file is the bundle
URL_SHAPE = re.compile(r"https://[\w.-]+(/[\w.~-]+)+")  # no quotes, spaces or shell syntax


def check_url(url: str) -> str:
    """`url` without a trailing slash, or ValueError when it is not a plain https address."""
    url = url.strip().rstrip("/")
    if url and not URL_SHAPE.fullmatch(url):
        raise ValueError(f"not a plain https repository address: {url!r}")
    return url


def repo_url() -> str:
    """The repository address: env ENDOVAE_REPO_URL, else REPO_URL; "" when there is none."""
    return check_url(os.environ.get(REPO_ENV) or REPO_URL)


def colab_link(notebook: str, url: str | None = None) -> str:
    """The Colab address that opens notebooks/<notebook> from a GitHub repository, else ""."""
    url = repo_url() if url is None else url
    path = url.removeprefix("https://github.com/").removesuffix(".git")
    if path == url:
        return ""
    return f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}"


def badge(notebook: str, url: str | None = None) -> str:
    """The "Open in Colab" badge as one line of HTML, or "" without a GitHub address."""
    link = colab_link(notebook, url)
    return link and f'<a href="{link}"><img src="{BADGE_SVG}" alt="Open In Colab"/></a>'


def title_source(text: str, notebook: str, url: str | None = None) -> str:
    """The title cell: its `# NN · Title` line, the badge when there is one, the rest as it was."""
    head, *rest = text.split("\n")
    body = "\n".join(line for line in rest if not BADGE_LINE.match(line)).lstrip("\n")
    line = badge(notebook, url)
    return "\n\n".join(part for part in (head, line, body) if part)


def setup_source(url: str | None = None) -> str:
    """The guarded Colab setup cell: find (or clone) the bundle, install it, cd to its notebooks."""
    url = repo_url() if url is None else url
    clone = (
        f"""    clone = "git clone -q --depth 1 {url}"
    if not os.path.isfile(f"{{here}}/{{mark}}") and os.system(f"{{clone}} {{here}}"):
        print("Could not clone {url}; looking in Google Drive instead.")
"""
        if url
        else ""
    )
    return f'''{SETUP_MARK} find the bundle, install it, work in its notebooks/; elsewhere nothing.
import sys

if "google.colab" in sys.modules:
    import io
    import os
    import shutil
    import tempfile
    import zipfile

    from google.colab import drive, files

    home, mark = "{HOME}", "{BUNDLE_MARK}"  # the bundle: the folder holding {BUNDLE_MARK}
    here, mine = f"{{home}}/endovae-report", f"{{home}}/drive/MyDrive/endovae-report"
{clone}    if not os.path.isfile(f"{{here}}/{{mark}}"):
        if not os.path.isdir(f"{{home}}/drive/MyDrive"):
            try:
                drive.mount(f"{{home}}/drive")
            except Exception as err:  # declined or unavailable: the upload below still works
                print(f"Google Drive not mounted ({{err}}).")
        if os.path.isfile(f"{{mine}}/{{mark}}"):
            here = mine
        else:
            print(f"No bundle at {{here}} or My Drive/endovae-report: upload a zip of it.")
            data = next(iter(files.upload().values()), b"")
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z, tempfile.TemporaryDirectory() as tmp:
                    names = [n for n in z.namelist() if f"/{{n}}".endswith(f"/{{mark}}")]
                    top = min(names, key=len).removesuffix(mark)  # ValueError: not the bundle
                    z.extractall(tmp)
                    shutil.copytree(f"{{tmp}}/{{top}}", here, dirs_exist_ok=True)
            except (zipfile.BadZipFile, ValueError):
                raise SystemExit(
                    f"The upload is not a zip of the bundle (no {{mark}} in it): make one with "
                    "`git archive -o endovae-report.zip HEAD`, then run this cell again."
                ) from None
    if here not in sys.path:
        sys.path.insert(0, here)
    %pip install -q -r {{here}}/requirements.txt -e {{here}}
    %cd {{here}}/notebooks'''


def synced_cells(nb: dict, name: str, url: str | None = None) -> dict:
    """The notebook with its title cell's badge and its Colab setup cell regenerated."""
    cells = nb["cells"]
    cells[0]["source"] = title_source("".join(cells[0]["source"]), name, url)
    cells[0]["source"] = cells[0]["source"].splitlines(keepends=True)
    setup = next(c for c in cells if "".join(c["source"]).startswith(SETUP_MARK))
    setup["source"] = setup_source(url).splitlines(keepends=True)
    return nb


def sync(folder: Path, write: bool, url: str | None = None) -> list[str]:
    """Names of the notebooks whose generated cells differ (rewritten when `write`)."""
    stale = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not a readable notebook ({one_line(exc)})") from exc
        before = json.dumps(nb, sort_keys=True)
        nb = synced_cells(nb, path.name, url)
        if json.dumps(nb, sort_keys=True) != before:
            stale.append(path.name)
            if write:
                atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return stale


def store_repo(url: str, source: Path = Path(__file__)) -> None:
    """Write `url` as REPO_URL in this module's source ("" removes the address)."""
    text = source.read_text(encoding="utf-8")
    line = f"REPO_URL = {json.dumps(url)}  # " + (
        "the published repository (`--write --repo URL`)"
        if url
        else "no published repository; `--write --repo URL` stores one here"
    )
    new, n = re.subn(r"^REPO_URL = .*$", lambda _: line, text, count=1, flags=re.M)
    if n != 1:
        raise OSError(0, "it holds no REPO_URL line", str(source))
    atomic_write_text(source, new)


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite (--write) the generated cells of every notebook."""
    parser = argparse.ArgumentParser(prog="python -m helpers.colab", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the generated cells")
    parser.add_argument(
        "--repo",
        metavar="URL",
        help='with --write: store URL as the repository address ("" removes it)',
    )
    args = parser.parse_args(argv)
    if args.repo is not None and not args.write:
        parser.error("--repo needs --write")
    try:
        url = repo_url() if args.repo is None else check_url(args.repo)
    except ValueError as exc:
        parser.error(f"{'--repo' if args.repo is not None else REPO_ENV}: {exc}")
    folder = Path(__file__).resolve().parents[2] / "notebooks"
    try:
        if args.repo is not None:
            store_repo(url)
        stale = sync(folder, args.write, url)
    except (OSError, ValueError) as exc:  # a read-only checkout, a full disk: one line, exit 2
        print(f"error: {one_line(exc) if isinstance(exc, OSError) else exc}", file=sys.stderr)
        return 2
    for name in stale:
        print(f"{'rewrote' if args.write else 'out of sync'}: {name}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
