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
	$(VENV)/edgeslim eval --model resnet20 --weights $(DATA)/pretrained/resnet20-12fca82f.th \
		--data $(DATA)/cifar10-exact-subset --split test
	$(VENV)/edgeslim prune --model resnet20 --weights $(DATA)/pretrained/resnet20-12fca82f.th \
		--method fpgm --ratio 0.5 --include '*.conv1' --finetune-epochs 1 --limit 10000 \
		--data $(DATA)/cifar10-jpeg --out runs/demo/resnet20-fpgm.pt
	$(VENV)/edgeslim eval --checkpoint runs/demo/resnet20-fpgm.pt --data $(DATA)/cifar10-exact-subset --split test
	$(VENV)/edgeslim bench --checkpoint runs/demo/resnet20-fpgm.pt -b 1 -b 32

bench: setup
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python train_speed.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python pruning.py
	cd benchmarks && EDGESLIM_DATA=$(abspath $(DATA)) ../$(VENV)/python quantization.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
