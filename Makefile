# Two entry points (see README): `make book` builds the book at the default profile,
# `make test` runs unit tests, nbval over every notebook at the smoke profile, and a book build.
PYTHON ?= python3
PROFILE ?= default
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# A local MathJax 3 (npm package, es5 build) so that math renders with no network; fetched at
# build time (with Debian's npm if none is installed) into a git-ignored folder that Sphinx
# copies to _static/mathjax/.
MATHJAX := book/_mathjax/mathjax/tex-mml-chtml.js
# The browser test drives Debian's headless Chromium; installed here when missing (CI runs as root).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq

.PHONY: venv book test unit nbval dryrun book-check chromium clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,notebook]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

$(MATHJAX):
	command -v npm >/dev/null || { $(APT_INSTALL) npm >/dev/null; }
	rm -rf book/_mathjax .mathjax-fetch && mkdir -p book/_mathjax .mathjax-fetch
	cd .mathjax-fetch && npm pack --silent mathjax@3 >/dev/null && tar xzf mathjax-*.tgz
	mv .mathjax-fetch/package/es5 book/_mathjax/mathjax && rm -rf .mathjax-fetch

$(CHROMIUM):
	$(APT_INSTALL) chromium fonts-dejavu-core >/dev/null

chromium: $(CHROMIUM)

book: $(STAMP) $(MATHJAX)
	FLATLIB_PROFILE=$(PROFILE) $(VENV)/bin/jupyter-book build . --keep-going -W -n

# unit tests, the doctests in flatlib's docstrings, and the import-linter layer contracts (tests/test_layers.py)
unit: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --doctest-modules flatlib tests --ignore=tests/book

# two notebook kernels at a time, one thread each: 2 CI cores, no oversubscription
nbval: $(STAMP)
	FLATLIB_PROFILE=smoke OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks

# the paper profile end to end on fabricated data: every run truncated to one step per kept epoch, every
# measure to a few iterations, every notebook rendered (flatlib/dryrun.py); its own results folder
dryrun: $(STAMP)
	rm -rf results-dryrun/paper _build/executed/dryrun-paper
	OMP_NUM_THREADS=1 $(VENV)/bin/flatlib run-all --profile paper --dry-run --jobs 2
	rm -rf results-dryrun/paper/checkpoints

book-check: book $(CHROMIUM)
	$(PY) -m pytest tests/book -q

test: unit nbval dryrun book-check

clean:
	rm -rf _build results/smoke results-dryrun book/_mathjax
