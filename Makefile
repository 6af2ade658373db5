# vallr-pin top-level targets. Each target does the set-up it needs on a fresh machine (they depend on install).
#   make install   pinned Python stack in tools/venv (+ sclite); a no-op in seconds when nothing changed
#   make test      the test suite (what CI runs)
#   make demo      the embedded default recipe egs/mini_cnvsrc/vsr1, stages 0-9, on CPU
#   make bench     benchmarks under test/bench/ (print figures)
#   make clean     remove recipe outputs (data/ dump/ exp/ downloads/) of every recipe
SHELL := /bin/bash
VENV := $(CURDIR)/tools/venv
export PATH := $(VENV)/bin:$(PATH)
# No GPU and no hub downloads on this project's machines: never let a library try the network.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
PYTEST_ARGS ?= -q

.PHONY: install test demo bench clean

install:
	@$(MAKE) --no-print-directory -C tools

test: install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) test

demo: install
	@if [ -x egs/mini_cnvsrc/vsr1/run.sh ]; then \
	  cd egs/mini_cnvsrc/vsr1 && ./run.sh --stage 0 --stop-stage 9; \
	else echo "make demo: egs/mini_cnvsrc/vsr1 is not there yet (issue 7)"; exit 1; fi

bench: install
	@set -e; for b in test/bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b; done

clean:
	rm -rf egs/*/vsr1/data egs/*/vsr1/dump egs/*/vsr1/exp egs/*/vsr1/downloads
