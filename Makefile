# The two commands a new user needs: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install serve test lint bench clean

$(BIN)/hfp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q --index-url https://download.pytorch.org/whl/cpu torch
	# ray: the Ray Serve tests (tests/integration/test_ray_serve.py) run in `make test` too
	$(BIN)/pip install -q -e ".[dev,ray,optimize,tracing]"
	touch $(BIN)/hfp

install: $(BIN)/hfp

serve: install
	HF_HUB_OFFLINE=1 $(BIN)/hfp serve $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: install
	$(BIN)/python bench/serve_embeddings.py

clean:
	rm -rf $(VENV) build *.egg-info
