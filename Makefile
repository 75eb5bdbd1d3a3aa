# Quick start: `make demo` runs the main job, `make test` runs the test suite. Both build .venv when missing.
PYTHON ?= $(shell command -v python3.12 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: venv test demo lint bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# Debian's Chromium for the editor's end-to-end test; without it that one test is skipped with the reason.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || bash scripts/install_browser.sh \
		|| echo "warning: could not install chromium; the browser test will be skipped"

demo: $(STAMP)
	$(BIN)/dexworld demo --out demo_out

lint: $(STAMP)
	$(BIN)/ruff check .

# Speed benchmarks (each prints a ratio against a baseline). ablation.py and tiny_sim_eval.py train/evaluate models
# on synthetic data and take their own arguments (docs/results.md).
SPEED_BENCHMARKS := fk retarget control_module render bimanual_render export annotation distributed
bench: $(STAMP)
	for b in $(SPEED_BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) outputs demo_out
