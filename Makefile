PYTHON ?= python3

.PHONY: compile debug test test-debug lint bench clean

compile:
	$(PYTHON) setup.py build_ext --inplace

debug:
	FASTPUSH_DEBUG=1 $(PYTHON) setup.py build_ext --inplace --force

test: compile
	$(PYTHON) -m pytest

test-debug: debug
	$(PYTHON) -m pytest

lint:
	ruff check fastpush tests bench
	cython-lint fastpush || true

bench:
	$(MAKE) -C bench
	$(PYTHON) bench/fanout_check.py

clean:
	rm -rf build fastpush/_core.c fastpush/_core.html fastpush/*.so
