# The two commands: `make demo` (main job) and `make test` (test suite).
# Both install what they need into the current Python environment.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test install install-test data browser lint bench

demo: install data
	$(PYTHON) -m dynabit demo

test: install-test data browser
	$(PYTHON) -m pytest

install:
	$(PIP) install -q --disable-pip-version-check -e .

install-test:
	$(PIP) install -q --disable-pip-version-check -e ".[test]"

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; without root (or apt)
# the commands go on and the demo falls back to sklearn's bundled digits.
data:
	@if [ ! -d $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	      || echo "note: could not install dataset-fashion-mnist"; \
	  else echo "note: $(FMNIST) missing; run 'sudo apt-get install dataset-fashion-mnist'"; fi; \
	fi

# The report test opens the HTML report in Debian's headless Chromium.
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "note: chromium missing; run 'sudo apt-get install chromium'"; fi; \
	fi

lint:
	$(PYTHON) -m ruff check src tests benchmarks

bench:
	$(PYTHON) benchmarks/core.py
