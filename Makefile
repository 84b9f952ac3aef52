# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make serve   create .venv, install, migrate, serve under gunicorn (embedded PostgreSQL
#                unless DATABASE_URL is set)
#   make test    create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test openapi install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/registry serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

openapi: $(STAMP)
	$(BIN)/registry openapi --output openapi.yaml

clean:
	rm -rf $(VENV) var build *.egg-info
