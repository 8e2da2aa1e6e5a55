# EndoVAE report bundle.  `make report` builds the PDF, `make test` runs the tests.
#   make report PROFILE=paper ARGS="--data /path/to/kvasir-dataset.zip"
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
ARGS ?=
STAMP := $(VENV)/.setup-done
APT_PACKAGES := texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc \
	fonts-dejavu-core poppler-utils
LINT_PATHS := helpers tests benchmarks notebooks

.PHONY: setup report test lint clean distclean

setup: $(STAMP)

# Re-runs only when the requirements or pyproject change (the stamp makes `make setup` instant).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q -e .
	@if command -v xelatex >/dev/null && command -v pandoc >/dev/null \
		&& command -v pdftotext >/dev/null && test -f /usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the PDF tools: $(APT_PACKAGES)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(APT_PACKAGES) >/dev/null; \
	else \
		echo "note: the PDF needs xelatex and pandoc; install them with:"; \
		echo "  sudo apt-get install $(APT_PACKAGES)"; \
	fi
	@touch $@

report: setup
	$(PY) -m helpers.run --profile $(PROFILE) $(ARGS)

# Two pytest-xdist workers, one file each at a time, the end-to-end run first (tests/conftest.py
# pins each worker to its own cores): the quick run overlaps the other files. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: setup
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

# clean: built reports, caches and the quick run (cheap to remake); runs/paper is kept.
clean:
	rm -rf report/build runs/quick .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# distclean: also every run folder (paper runs included) and the virtual environment.
distclean: clean
	rm -rf runs $(VENV)
