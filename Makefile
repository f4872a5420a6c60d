# Jardin: `make run` serves the forum, `make test` runs the suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The suite runs on this many processes (pytest-xdist): one per core, at most four; `make test TEST_WORKERS=0`
# runs it in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: run test lint bench format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP) $@

run: $(STAMP)
	$(BIN)/forum serve

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(TEST_STAMP)
	$(BIN)/python -m tests.bench.run

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Refresh the translation catalogs from the sources: forum/locale/messages.pot, then en and fr.
# New strings arrive untranslated (tests/forum/test_i18n.py then names them); strings gone from
# the sources leave the catalogs.
.PHONY: messages
messages: $(STAMP)
	$(BIN)/pybabel extract --mapping-file=babel.cfg --output-file=forum/locale/messages.pot \
		--project=Jardin --add-location=file --no-wrap .
	for lang in en fr; do \
		$(BIN)/pybabel update --input-file=forum/locale/messages.pot --output-dir=forum/locale \
			--locale=$$lang --init-missing --no-fuzzy-matching --ignore-obsolete --no-wrap || exit 1; \
	done
