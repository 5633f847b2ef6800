# Two entry points that do all set-up on a fresh machine:
#   make demo   - the main job
#   make test   - the test suite (what CI runs)
EXTRAS ?= dev,all
VENV := .venv/bin
DATA ?= $(if $(EDGESLIM_DATA),$(EDGESLIM_DATA),../shared/data)
# The demo's budget: relative to the unpruned model (speed-up, measured on this machine) rather than
# in milliseconds, which differ from machine to machine.
BUDGET ?= --min-speedup 1.5 --max-size-mb 0.8 --max-accuracy-drop 2

.PHONY: setup test lint demo bench clean

$(VENV)/edgeslim: pyproject.toml constraints.txt setup.sh
	./setup.sh $(EXTRAS)
	@touch $@

setup: $(VENV)/edgeslim

test: setup
	EDGESLIM_DATA=$(DATA) $(VENV)/pytest -q

lint: setup
	$(VENV)/ruff check src tests benchmarks
	$(VENV)/ruff format --check src tests benchmarks
	$(VENV)/mypy
	$(VENV)/lint-imports

# the store is the default runs/sweeps.db, so the README's `edgeslim results quickstart` reads it
demo: setup
	EDGESLIM_DATA=$(DATA) $(VENV)/edgeslim sweep examples/quickstart.yaml
	$(VENV)/edgeslim report quickstart --out runs/demo/quickstart-report.html $(BUDGET)
	@# exit 1 means no trial fits the budget on this machine (an answer, printed with the closest ones)
	$(VENV)/edgeslim recommend quickstart $(BUDGET); [ $$? -le 1 ]

bench: setup
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python train_speed.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python pruning.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python quantization.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python distillation.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python runtimes.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python sweep.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
