# microq — the two commands a newcomer needs:
#   make demo   set up, then quantize -> generate C -> compile -> run -> compare on the bundled model
#   make test   set up, then run the test suite
#   make test-quick   the suite without the slow tests (emulator, cross matrix, wheel, MLPerf)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.microq-installed
OUT    ?= out
ASSETS  = python/microq/assets
DEMO_MODEL = $(ASSETS)/digits_cnn.onnx
JOBS   ?= 2

.PHONY: setup demo test test-quick bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/microq inspect $(DEMO_MODEL)
	$(BIN)/microq compile $(DEMO_MODEL) --calib $(ASSETS)/digits_calib.npz -o $(OUT)/digits --name digits
	@echo "== the generated folder compiles on its own with strict C99 flags:"
	mkdir -p $(OUT)/obj && cd $(OUT)/obj && cc -std=c99 -Wall -Wextra -Werror -pedantic -O2 -I ../digits -c ../digits/*.c
	size $(OUT)/obj/*.o | tail -n +1
	$(BIN)/microq run $(OUT)/digits --input $(ASSETS)/digits_test.npz -o $(OUT)/digits_pred.npz
	$(BIN)/microq compare $(DEMO_MODEL) $(OUT)/digits --data $(ASSETS)/digits_test.npz

test: setup
	$(BIN)/python -m pytest -q -rs -n $(JOBS)

test-quick: setup
	$(BIN)/python -m pytest -q -rs -n $(JOBS) -m "not slow"

bench: setup
	$(BIN)/python tools/bench.py
	$(BIN)/python tools/bench_kernels.py

clean:
	rm -rf $(OUT) build .pytest_cache

# long import fuzz (issue 9): 1000 ONNX + 1000 TFLite mutants, every compiled one run under ASan
.PHONY: fuzz
fuzz: setup
	$(BIN)/python tools/fuzz_import.py --count 1000 --seed 1 --asan all
