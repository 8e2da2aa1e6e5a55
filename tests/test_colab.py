"""Badges and Colab setup cells are generated from one (optional) repository address.

The setup cell's logic is run here off Colab: a fake `google.colab` module in sys.modules, the
cell's one absolute path ("/content") redirected to tmp_path, and a fake IPython for its magics.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import sys
import types
import zipfile

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from helpers.core import paths
from helpers.runner import colab

URL = "https://github.com/someone/fork"
NOTEBOOKS = sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))

# Repository addresses that may appear in the bundle (real third-party projects, e.g. in a
# citation), as "owner/name". None by default; the configured repo_url(), if any, is allowed too.
ALLOWED_REPOSITORIES: set[str] = set()
ADDRESS = re.compile(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+)/([\w.-]+)")


# ---- the generator and the notebooks ----------------------------------------------------------


def test_notebook_badges_and_setup_cells_match_the_generator():
    assert colab.sync(paths.notebooks_dir(), write=False) == [], (
        "run python -m helpers.colab --write"
    )


def test_without_an_address_there_is_no_badge_and_no_clone(monkeypatch):
    monkeypatch.delenv(colab.REPO_ENV, raising=False)
    monkeypatch.setattr(colab, "REPO_URL", "")
    assert colab.repo_url() == "" and colab.badge("01_x.ipynb") == ""
    assert "git clone" not in colab.setup_source()
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        synced = colab.synced_cells(nb, path.name)
        title = "".join(synced["cells"][0]["source"])
        head, blank, paragraph, *_ = title.split("\n")
        assert head.startswith(f"# {path.name[:2]} · ") and blank == "" and paragraph, path.name
        assert "colab-badge" not in title and "github" not in title


def test_an_address_adds_the_badge_after_the_title_and_the_clone_step():
    text = "# 01 · Title\n\nWhat it does,\nin two lines."
    with_badge = colab.title_source(text, "01_x.ipynb", URL)
    assert with_badge.split("\n\n")[1] == colab.badge("01_x.ipynb", URL)
    assert colab.title_source(with_badge, "01_x.ipynb", URL) == with_badge
    assert colab.title_source(with_badge, "01_x.ipynb", "") == text
    assert f"git clone -q --depth 1 {URL}" in colab.setup_source(URL)
    link = colab.colab_link("01_x.ipynb", URL + ".git")
    assert (
        link
        == "https://colab.research.google.com/github/someone/fork/blob/main/notebooks/01_x.ipynb"
    )


def test_a_non_github_address_clones_but_has_no_badge():
    url = "https://git.example.org/me/endovae"
    assert colab.badge("01_x.ipynb", url) == "" and url in colab.setup_source(url)


def test_env_overrides_the_stored_address(monkeypatch):
    monkeypatch.setenv(colab.REPO_ENV, URL + ".git/")
    assert colab.repo_url() == URL + ".git"
    assert colab.colab_link("01_x.ipynb").startswith(
        "https://colab.research.google.com/github/someone/fork/blob/main/notebooks/"
    )
    assert URL in colab.setup_source()


@pytest.mark.parametrize("bad", ["github.com/a/b", "https://x.org/a b", 'https://x.org/a";rm', "x"])
def test_only_plain_https_addresses_are_accepted(bad, monkeypatch):
    with pytest.raises(ValueError, match="plain https"):
        colab.check_url(bad)
    monkeypatch.setenv(colab.REPO_ENV, bad)
    with pytest.raises(SystemExit):
        colab.main([])


def test_repo_needs_write(capsys):
    with pytest.raises(SystemExit):
        colab.main(["--repo", URL])
    assert "--repo needs --write" in capsys.readouterr().err


def test_store_repo_writes_the_one_line_and_removes_it_again(tmp_path):
    copy = tmp_path / "colab.py"
    copy.write_text(open(colab.__file__, encoding="utf-8").read(), encoding="utf-8")

    def stored() -> str:
        tree = ast.parse(copy.read_text(encoding="utf-8"))
        assigns = [n for n in tree.body if isinstance(n, ast.Assign)]
        return next(ast.literal_eval(n.value) for n in assigns if n.targets[0].id == "REPO_URL")

    colab.store_repo(URL, copy)
    assert stored() == URL
    colab.store_repo("", copy)
    assert stored() == ""
    copy.write_text("nothing here\n", encoding="utf-8")
    with pytest.raises(OSError, match="no REPO_URL line"):
        colab.store_repo(URL, copy)


@pytest.mark.parametrize("url", ["", URL])
def test_setup_cell_is_valid_ipython(url):
    code = TransformerManager().transform_cell(colab.setup_source(url))
    compile(code, "setup", "exec")
    assert code.startswith(colab.SETUP_MARK) and 'if "google.colab" in sys.modules:' in code


def test_badge_is_html_so_latex_never_sees_a_remote_image():
    badge = colab.badge("01_preprocessing.ipynb", URL)
    assert badge.startswith("<a href=") and "![" not in badge


def test_readme_colab_links_follow_the_address():
    readme = (paths.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"https://colab\.research\.google\.com/github/\S+?\.ipynb", readme)
    assert all(link == colab.colab_link(link.rsplit("/", 1)[1]) for link in links)
    assert "helpers.colab --write --repo" in readme


def test_no_address_of_a_repository_that_does_not_exist():
    """Every github.com / Colab-from-GitHub address in the bundle is the configured one or allowed."""
    root = paths.PROJECT_ROOT
    allowed = set(ALLOWED_REPOSITORIES)
    if colab.colab_link("x.ipynb"):
        allowed.add(colab.repo_url().removeprefix("https://github.com/").removesuffix(".git"))
    files = [root / "README.md", root / "DEVELOPING.md", *NOTEBOOKS]
    files += [*sorted((root / "helpers").rglob("*.py")), *sorted((root / "report").rglob("*.md"))]
    found = []
    for path in files:
        for owner, name in ADDRESS.findall(path.read_text(encoding="utf-8")):
            repo = f"{owner}/{name.removesuffix('.git')}"
            if repo not in allowed:
                found.append(f"{path.relative_to(root)}: {repo}")
    assert not found, "repository addresses that are neither configured nor allowed: " + str(found)


# ---- the setup cell's logic, off Colab ----------------------------------------------------------


class FakeIPython:
    def __init__(self):
        self.magics = []

    def run_line_magic(self, name, line):
        self.magics.append((name, line))


def fail(*args, **kwargs):
    raise AssertionError("must not be called")


def run_cell(home, url="", mount=fail, upload=fail, on_colab=True, monkeypatch=None):
    """Execute the generated setup cell with /content -> `home`; return its namespace."""
    source = colab.setup_source(url)
    assert source.count(f'"{colab.HOME}"') == 1
    source = source.replace(f'"{colab.HOME}"', json.dumps(str(home)))
    fake = types.ModuleType("google.colab")
    fake.drive = types.SimpleNamespace(mount=mount)
    fake.files = types.SimpleNamespace(upload=upload)
    monkeypatch.setattr(sys, "path", list(sys.path))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", fake)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    ipython = FakeIPython()
    namespace = {"get_ipython": lambda: ipython, "__name__": "__main__"}
    exec(TransformerManager().transform_cell(source), namespace)
    namespace["ipython"] = ipython
    return namespace


def make_bundle(folder):
    (folder / "helpers").mkdir(parents=True)
    (folder / "helpers" / "colab.py").write_text("# the bundle\n")
    (folder / "notebooks").mkdir()
    return folder


def bundle_zip(prefix="", mark=colab.BUNDLE_MARK):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(f"{prefix}{mark}", "# the bundle\n")
        z.writestr(f"{prefix}notebooks/01_x.ipynb", "{}")
        z.writestr(f"{prefix}requirements.txt", "numpy\n")
    return buffer.getvalue()


def assert_installed_from(namespace, here):
    assert namespace["here"] == str(here)
    assert sys.path[0] == str(here)
    assert namespace["ipython"].magics == [
        ("pip", "install -q -r {here}/requirements.txt -e {here}"),
        ("cd", "{here}/notebooks"),
    ]


def test_off_colab_the_cell_does_nothing(tmp_path, monkeypatch):
    before = list(sys.path)
    namespace = run_cell(tmp_path, on_colab=False, monkeypatch=monkeypatch)
    assert set(namespace) - {"__builtins__"} == {"get_ipython", "__name__", "sys", "ipython"}
    assert namespace["ipython"].magics == [] and sys.path == before
    assert list(tmp_path.iterdir()) == []


def test_the_bundle_at_content_endovae_report_is_used(tmp_path, monkeypatch):
    here = make_bundle(tmp_path / "endovae-report")
    make_bundle(tmp_path / "drive" / "MyDrive" / "endovae-report")
    assert_installed_from(run_cell(tmp_path, monkeypatch=monkeypatch), here)


@pytest.mark.parametrize("mounted", [True, False])
def test_the_bundle_in_my_drive_is_used_mounting_drive_if_needed(tmp_path, monkeypatch, mounted):
    mine = tmp_path / "drive" / "MyDrive" / "endovae-report"
    mounts = []

    def mount(where):
        mounts.append(where)
        make_bundle(mine)

    if mounted:
        make_bundle(mine)
    namespace = run_cell(tmp_path, mount=fail if mounted else mount, monkeypatch=monkeypatch)
    assert_installed_from(namespace, mine)
    assert mounts == ([] if mounted else [str(tmp_path / "drive")])
    assert not (tmp_path / "endovae-report").exists()


@pytest.mark.parametrize("prefix", ["", "endovae-report-main/"])
@pytest.mark.parametrize("drive_ok", [True, False])
def test_neither_folder_asks_for_a_zip_and_unpacks_it(
    tmp_path, monkeypatch, capsys, prefix, drive_ok
):
    def mount(where):
        if not drive_ok:
            raise ValueError("mount failed")
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    def upload():
        return {"endovae-report.zip": bundle_zip(prefix)}

    namespace = run_cell(tmp_path, mount=mount, upload=upload, monkeypatch=monkeypatch)
    here = tmp_path / "endovae-report"
    assert_installed_from(namespace, here)
    assert (here / colab.BUNDLE_MARK).is_file() and (here / "notebooks" / "01_x.ipynb").is_file()
    assert (here / "requirements.txt").read_text() == "numpy\n"
    out = capsys.readouterr().out
    assert "upload a zip" in out and (drive_ok or "Google Drive not mounted (mount failed)" in out)


@pytest.mark.parametrize(
    "uploads",
    [{"notes.txt": b"not a zip"}, {"other.zip": bundle_zip(mark="src/colab.py")}, {}],
    ids=["not-a-zip", "zip-without-the-bundle", "nothing-uploaded"],
)
def test_a_bad_upload_stops_with_one_clear_line(tmp_path, monkeypatch, uploads):
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        run_cell(tmp_path, upload=lambda: uploads, monkeypatch=monkeypatch)
    message = str(stop.value)
    assert "\n" not in message and message.startswith("The upload is not a zip of the bundle")
    assert "git archive" in message and colab.BUNDLE_MARK in message
    assert not (tmp_path / "endovae-report").exists()


@pytest.mark.parametrize("clone_works", [True, False])
def test_with_an_address_the_cell_clones_first(tmp_path, monkeypatch, capsys, clone_works):
    commands = []

    def system(command):
        commands.append(command)
        if clone_works:
            make_bundle(tmp_path / "endovae-report")
        return 0 if clone_works else 128

    monkeypatch.setattr(os, "system", system)
    mine = tmp_path / "drive" / "MyDrive" / "endovae-report"
    make_bundle(mine)
    namespace = run_cell(tmp_path, url=URL, monkeypatch=monkeypatch)
    assert commands == [f"git clone -q --depth 1 {URL} {tmp_path / 'endovae-report'}"]
    assert_installed_from(namespace, tmp_path / "endovae-report" if clone_works else mine)
    assert ("Could not clone" in capsys.readouterr().out) is not clone_works
