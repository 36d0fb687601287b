# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing and
# install the project with its test extras, pinning torch to the CPU build (constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.e4gym-installed
# The Triton server's own environment (PyTriton pins numpy<2; docs/serving.md), used by the serving tests.
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.e4gym-installed
# RLlib's environment (it pins an older gymnasium than .venv's; docs/ray.md "RLlib"), used by tests/rllib. It is
# a layer over .venv: a .pth adds .venv's site-packages *after* its own, so only what must differ (gymnasium,
# RLlib's own dependencies missing from .venv) and e4gym itself are installed in it (about 10 s and 40 MB, against
# 50 s and 2.1 GB for a full copy with torch). Made with .venv's interpreter, so both are the same Python.
RLLIB_VENV := .venv-rllib
RLLIB_STAMP := $(RLLIB_VENV)/.e4gym-installed

.PHONY: demo test lint calibrate bench-emulator bench-env triton-env rllib-env clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

$(TRITON_STAMP): pyproject.toml constraints.txt requirements-triton.txt
	@test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	@echo '*' > $(TRITON_VENV)/.gitignore  # as Python 3.13's venv does: git and ruff skip it
	$(TRITON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install --quiet -c constraints.txt -r requirements-triton.txt -e .
	@touch $(TRITON_STAMP)

triton-env: $(TRITON_STAMP)

$(RLLIB_STAMP): $(STAMP) pyproject.toml constraints.txt
	@test -x $(RLLIB_VENV)/bin/python || $(BIN)/python -m venv $(RLLIB_VENV)
	@echo '*' > $(RLLIB_VENV)/.gitignore  # as Python 3.13's venv does: git and ruff skip it
	$(BIN)/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_path('purelib'))" \
		> "$$($(RLLIB_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")/zz_e4gym_venv.pth"
	$(RLLIB_VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[rllib]'
	@touch $(RLLIB_STAMP)

rllib-env: $(RLLIB_STAMP)

demo: $(STAMP)
	$(BIN)/e4gym bench --config quickstart --out runs/quickstart

test: $(STAMP) $(TRITON_STAMP) $(RLLIB_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

calibrate: $(STAMP)
	$(BIN)/e4gym calibrate

bench-emulator: $(STAMP)
	$(BIN)/python benchmarks/emulator_speed.py

bench-env: $(STAMP)
	$(BIN)/python benchmarks/env_speed.py

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(RLLIB_VENV) .pytest_cache .ruff_cache
