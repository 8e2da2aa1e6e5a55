"""The repository address lives in one place; badges and Colab setup cells are generated from it."""

from __future__ import annotations

import re

from IPython.core.inputtransformer2 import TransformerManager

from helpers import colab, paths


def test_notebook_badges_and_setup_cells_match_the_one_url():
    assert colab.sync(paths.notebooks_dir(), write=False) == [], (
        "run python -m helpers.colab --write"
    )


def test_readme_badges_use_the_one_url():
    readme = (paths.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"https://colab\.research\.google\.com/github/\S+?\.ipynb", readme)
    notebooks = sorted(p.name for p in paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert sorted(link.rsplit("/", 1)[1] for link in links) == notebooks
    assert all(link == colab.colab_link(link.rsplit("/", 1)[1]) for link in links)
    assert colab.repo_url() in readme


def test_a_fork_overrides_the_url(monkeypatch):
    monkeypatch.setenv(colab.REPO_ENV, "https://github.com/someone/fork.git")
    assert colab.colab_link("01_x.ipynb").startswith(
        "https://colab.research.google.com/github/someone/fork/blob/main/notebooks/"
    )
    assert "https://github.com/someone/fork" in colab.setup_source()


def test_setup_cell_is_valid_ipython_and_says_what_to_do_when_cloning_fails():
    code = TransformerManager().transform_cell(colab.setup_source())
    compile(code, "setup", "exec")
    assert "google.colab" in code and "SystemExit" in code and colab.REPO_ENV in code


def test_badge_is_html_so_latex_never_sees_a_remote_image():
    badge = colab.badge("01_preprocessing.ipynb")
    assert badge.startswith("<a href=") and "![" not in badge
