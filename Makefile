# The two commands a newcomer types: `make demo` and `make test`. Both set up what they need.
.PHONY: setup demo test lint unit bench lock clean bench-router bench-delivery bench-observe \
        bench-operate bench-images bench-images-transfer bench-cli bench-idle bench-pipeline \
        bench-dashboard bench-api-stack \
        bench-recovery bench-dockerfile bench-swarm bench-resources

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/python scripts/demo.py $(if $(KEEP),--keep,)

lint: setup
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/mypy
	.venv/bin/lint-imports

# Tests mostly wait on real processes (sandboxes, routers, controllers), so three workers
# overlap well even on two cores; a file's tests stay together, in order, on one worker.
TEST_WORKERS ?= 3

test: lint
	.venv/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

unit: setup
	.venv/bin/pytest -q -m "not integration and not e2e"

bench: setup
	.venv/bin/python bench/deploy.py

bench-router: setup
	.venv/bin/python bench/router.py

bench-delivery: setup
	.venv/bin/python bench/delivery.py

bench-observe: setup
	.venv/bin/python bench/observe.py

bench-operate: setup
	.venv/bin/python bench/operate.py

bench-images: setup
	.venv/bin/python bench/images.py

bench-images-transfer: setup
	.venv/bin/python bench/images_transfer.py

bench-dockerfile: setup
	.venv/bin/python bench/dockerfile_stages.py

bench-cli: setup
	.venv/bin/python bench/cli.py

bench-idle: setup
	.venv/bin/python bench/idle.py

bench-pipeline: setup
	.venv/bin/python bench/pipeline.py

bench-dashboard: setup
	.venv/bin/python bench/dashboard.py

# ASGI_PYTHON=/path/to/python (with starlette and uvicorn) adds the peer ADR 0017 compares.
bench-api-stack: setup
	.venv/bin/python bench/api_stack.py

bench-recovery: setup
	.venv/bin/python bench/recovery.py

bench-resources: setup
	.venv/bin/python bench/resources.py

# Regenerate the hashed lock file after changing dependencies in pyproject.toml.
lock:
	.venv/bin/pip install -q uv && .venv/bin/uv pip compile pyproject.toml --extra dev \
	  --generate-hashes --python-version 3.11 -q -o requirements.lock

clean:
	rm -rf .venv demo-work .mypy_cache .ruff_cache .pytest_cache

bench-swarm: setup
	.venv/bin/python bench/swarm.py
