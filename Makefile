# Quick start: `make run` starts the gateway on an embedded local stack; `make test` runs the whole suite.
# Both bootstrap a fresh Debian/Ubuntu machine first (system packages as root, .venv, native build).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap run test test-fast bench bench-quick bench-check bench-baseline lint codegen clean

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(VENV)/bin/streamgate devstack

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: bootstrap
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

bench: bootstrap
	$(PY) -m bench.run --full

bench-quick: bootstrap
	$(PY) -m bench.run --quick --modes passthrough,identity

# min:100% = fail when a benchmark's best run is over 2x the baseline's (noise on shared machines reaches 2x on
# means; the regressions worth catching, e.g. a silent fallback to a pure-Python twin, are 70x and more).
bench-check: bootstrap
	$(PY) -m pytest bench/micro --benchmark-only --benchmark-compare=bench/baseline/micro.json \
	    --benchmark-compare-fail=min:100% -p no:cacheprovider

bench-baseline: bootstrap
	$(PY) -m bench.micro_baseline

lint: bootstrap
	$(VENV)/bin/ruff check gateway tests tools bench

codegen: bootstrap
	$(PY) tools/gen_kafka_codecs.py ../shared/kafka-protocol/message gateway/protocols/kafka/generated

clean:
	rm -rf build $(VENV) gateway/native/*.so _native/*.c .pytest_cache
