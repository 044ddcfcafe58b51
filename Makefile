# Two entry points (see README): `make book` builds the book at the default profile,
# `make test` runs unit tests, nbval over every notebook at the smoke profile, and a book build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv book test unit nbval book-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,notebook]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	FLATLIB_PROFILE=default $(PY) -m jupyter_book build . --keep-going -W -n

unit: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile tests --ignore=tests/book

nbval: $(STAMP)
	FLATLIB_PROFILE=smoke $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks

book-check: book
	$(PY) -m pytest tests/book -q

test: unit nbval book-check

clean:
	rm -rf _build results/smoke
