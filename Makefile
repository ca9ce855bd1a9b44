# The commands of the README: `make run`, `make test` and `make line-runtime`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the line runtime (installer/runtime/): its own venv, no torch, no Qt; LINE_EXTRAS=openvino adds OpenVINO
LINE_VENV   ?= .venv-line
LINE_STAGE  := build/line-runtime
LINE_EXTRAS ?=

.PHONY: run test lint install clean-venv line-runtime

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,deploy,int8,cluster]'
	@touch $(STAMP)

install: $(STAMP)

# the lint half of `make test`: ruff and the import contracts (.importlinter)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) scripts/import_contracts.py

run: $(STAMP)
	$(VENV)/bin/defect-studio

test: $(STAMP)
	$(VENV)/bin/ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

# the runtime-only install for a line PC: `defect-studio predict --model`, `watch`,
# `model-info --model PACKAGE`, `--version` in $(LINE_VENV) (see installer/runtime/pyproject.toml)
line-runtime:
	@test -x $(LINE_VENV)/bin/python || $(PYTHON) -m venv $(LINE_VENV)
	$(PYTHON) installer/runtime/stage.py $(LINE_STAGE)
	$(LINE_VENV)/bin/python -m pip install -q --upgrade \
	  "$(abspath $(LINE_STAGE))$(if $(LINE_EXTRAS),[$(LINE_EXTRAS)])"
	$(LINE_VENV)/bin/python -m pip install -q --no-deps --force-reinstall $(abspath $(LINE_STAGE))
	@$(LINE_VENV)/bin/python -c "import importlib.util as u, sys; \
	  bad = [m for m in ('torch', 'PySide6', 'pyqtgraph') if u.find_spec(m)]; \
	  sys.exit(f'line-runtime: {bad} found in $(LINE_VENV); it must stay torch- and Qt-free' \
	           if bad else 0)"
	@echo "line-runtime: $$($(LINE_VENV)/bin/defect-studio --version) in $(LINE_VENV)" \
	  "($$(du -sh $(LINE_VENV) | cut -f1)); run $(LINE_VENV)/bin/defect-studio --help"

clean-venv:
	rm -rf $(VENV)
