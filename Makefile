# cleanroom — every target sets up .venv itself, so a fresh clone needs only Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
OM_VENV  := .venv-openmined
OM_STAMP := $(OM_VENV)/.installed
FLOORS_VENV := .venv-floors

.PHONY: demo test floors browser lint typecheck proto-check pytest pytest-openssl fallback test-openssl proto bench bench-core bench-platform bench-match bench-load bench-load-attack bench-refusal bench-validation bench-profile sanitize clean

demo: $(STAMP)
	$(BIN)/cleanroom demo

test: $(STAMP) browser lint typecheck proto-check pytest fallback

# The dashboard's browser test drives Debian's Chromium; install it where we can (root with
# apt-get). Elsewhere that one test is skipped and says why.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the dashboard's browser test will be skipped"; \
	  else \
	    echo "no chromium (and no root apt-get to install it): the dashboard's browser test will be skipped"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# src, and the one test whose claim is a type check: its thread pool conforms to ChunkExecutor.
typecheck: $(STAMP)
	$(BIN)/mypy --strict src tests/unit/test_batch_executor.py

# The generated protobuf/gRPC code is committed; CI fails if regenerating it changes anything.
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP)
	$(BIN)/python scripts/gen_proto.py --check

pytest: $(STAMP)
	$(BIN)/pytest -q

# The whole suite again with X25519 forced onto OpenSSL: what every CPU without AVX-512 IFMA runs
# (`cleanroom --version` says which backend a machine uses). `make test-openssl` runs only this.
pytest-openssl: $(STAMP)
	CLEANROOM_X25519=openssl $(BIN)/pytest -q

# make test's second pass: on a CPU without IFMA the first pass already ran on OpenSSL, so it is
# not repeated there.
fallback: $(STAMP)
	@problem="$$($(BIN)/python -c 'from cleanroom.crypto.x25519 import ifma_problem; print(ifma_problem() or "")')"; \
	if [ -n "$$problem" ]; then \
	  echo "$$problem: the pass above already ran on OpenSSL, so it is not run again (make test-openssl forces it)"; \
	else \
	  $(MAKE) --no-print-directory pytest-openssl; \
	fi

test-openssl: pytest-openssl

# The floors in pyproject.toml, proven: a venv made afresh installs the package with every direct
# dependency at its floor (constraints-floors.txt; setuptools at its floor builds it), imports
# every module, and runs the tests that lean on a floor (generated code, certificates, GMP,
# phonenumbers' internals, health checking, the dashboard, a whole match, a Dask cluster). The
# floors come from the package index, then from pip's cache. .ci/run runs it after make test.
FLOORS_SMOKE := tests/vectors tests/unit/test_tls.py tests/unit/test_suites.py \
	tests/unit/test_service_standard_services.py tests/unit/test_identifiers_phone.py \
	tests/property/test_phone_fast_path.py tests/integration/test_advertiser.py \
	tests/integration/test_dashboard.py tests/integration/test_dask_cluster.py

floors:
	rm -rf $(FLOORS_VENV) build
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet -c constraints-floors.txt setuptools
	$(FLOORS_VENV)/bin/python -m pip install --quiet --no-build-isolation -c constraints-floors.txt \
	  '.[cluster]' pytest hypothesis
	$(FLOORS_VENV)/bin/python -m pip check
	$(FLOORS_VENV)/bin/python -c 'import importlib, pkgutil, cleanroom; \
	  assert "/$(FLOORS_VENV)/" in cleanroom.__file__, cleanroom.__file__; \
	  names = [m.name for m in pkgutil.walk_packages(cleanroom.__path__, "cleanroom.")]; \
	  [importlib.import_module(name) for name in names]; print(len(names), "modules import")'
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider $(FLOORS_SMOKE)

# The whole suite on the C extensions built with AddressSanitizer and UndefinedBehaviorSanitizer:
# a read or write out of bounds, a use after free or undefined behaviour in C code that parses
# hostile lists and received elements stops the test that caused it (exit status 86). They are
# built in a copy under build/sanitize, so .venv's own build is untouched, and are put first on
# PYTHONPATH, for the CLIs and servers the tests start too; tests/test_sanitized_build.py checks
# that they are the ones loaded. The browser is not ours: it runs without the preload. Leaks are
# not checked (the interpreter keeps objects alive until exit by design). .ci/run runs it after
# make floors.
SAN_DIR   := build/sanitize
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1

sanitize: $(STAMP)
	rm -rf $(SAN_DIR)
	mkdir -p $(SAN_DIR)
	cp -r setup.py pyproject.toml README.md src $(SAN_DIR)/
	rm -f $(SAN_DIR)/src/cleanroom/*/*.so
	cd $(SAN_DIR) && CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	  $(abspath $(BIN))/python setup.py --quiet build_ext --inplace
	@cc="$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("CC").split()[0])')"; \
	asan="$$($$cc -print-file-name=libasan.so)"; \
	test -f "$$asan" || { echo "no AddressSanitizer runtime (libasan.so) beside the C compiler"; exit 1; }; \
	echo "LD_PRELOAD=$$asan"; \
	PYTHONPATH="$(abspath $(SAN_DIR))/src" LD_PRELOAD="$$asan" CLEANROOM_SANITIZED=1 \
	  ASAN_OPTIONS=detect_leaks=0:exitcode=86 UBSAN_OPTIONS=print_stacktrace=1:exitcode=86 \
	  $(BIN)/pytest -q -p no:cacheprovider

# End to end against OpenMined PSI: the longest benchmark, most of it OpenMined at 10^6
# (RESULTS.md records how long each step took).
bench: $(BENCH_STAMP) $(OM_STAMP)
	$(BIN)/python benchmarks/e2e.py --sizes 10000,100000,1000000 --unbalanced 1000000:100000 --write-results

bench-core: $(STAMP)
	$(BIN)/python benchmarks/core.py

bench-platform: $(STAMP)
	$(BIN)/python benchmarks/platform_store.py --rows 1000000 --repeat 2 --write-results

bench-load: $(STAMP)
	$(BIN)/python benchmarks/load.py --advertisers 8 --records 20000 --platform-users 50000 --rounds 2 --write-results

# Honest advertisers while two hostile ones hold idle streams and send a duplicated U.
bench-load-attack: $(STAMP)
	$(BIN)/python benchmarks/load.py --attack --advertisers 8 --records 20000 --platform-users 50000 --rounds 3 --write-results

bench-refusal: $(STAMP)
	$(BIN)/python benchmarks/refusal.py --elements 300000 --repeat 3 --write-results

bench-validation: $(STAMP)
	$(BIN)/python benchmarks/validation.py --write-results

bench-match: $(STAMP)
	$(BIN)/python benchmarks/match.py --repeat 3 --write-results

# Samples the whole machine with Linux perf (Debian's linux-perf), installed where we can.
bench-profile: $(STAMP)
	@command -v perf >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; } \
	  || echo "could not install perf (Debian's linux-perf): the profile will say so"
	$(BIN)/python benchmarks/session_profile.py --write-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Plotting for the benchmarks (the `bench` extra), pinned like everything else.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# OpenMined PSI 2.0.6 needs protobuf 6 (ours is pinned to 7), so it gets a venv of its own.
$(OM_STAMP): benchmarks/openmined-constraints.txt
	$(PYTHON) -m venv $(OM_VENV)
	$(OM_VENV)/bin/python -m pip install --quiet -c benchmarks/openmined-constraints.txt openmined-psi
	touch $(OM_STAMP)

# Reinstall when the project's dependencies or pins change, or the C extensions' sources do
# (the editable install compiles them into src/).
$(STAMP): $(BIN)/python pyproject.toml setup.py constraints.txt $(wildcard src/cleanroom/*/*.c src/cleanroom/*/*.h)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(OM_VENV) $(FLOORS_VENV) build test-artifacts src/*.egg-info src/cleanroom/*/*.so .pytest_cache .mypy_cache .ruff_cache .hypothesis
