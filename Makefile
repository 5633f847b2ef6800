# Two entry points that do all set-up on a fresh machine:
#   make demo   - the main job
#   make test   - the test suite (what CI runs)
EXTRAS ?= dev,all
VENV := .venv/bin
DATA ?= $(if $(EDGESLIM_DATA),$(EDGESLIM_DATA),../shared/data)

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

demo: setup
	$(VENV)/edgeslim eval --model resnet56 --weights $(DATA)/pretrained/resnet56-4bfd9763.th \
		--data $(DATA)/cifar10-exact-subset --split test

bench: setup
	EDGESLIM_DATA=$(DATA) $(VENV)/python benchmarks/train_speed.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
