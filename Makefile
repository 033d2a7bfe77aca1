# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs probgen (CPU torch first), runs the tour
#   make test   installs the test extras and runs the suite, notebooks included
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
JOBS   ?= 2

.PHONY: demo test install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch goes in first, as the CPU wheel, so nothing later pulls a CUDA build
$(VENV)/.torch: $(PY) constraints.txt
	$(PIP) torch==2.13.0
	touch $@

# the editable install keeps its metadata in the venv (dist-info); the build's egg-info at the top
# level is not needed afterwards, and DESIGN.md keeps the top level to the project's own files
$(VENV)/.installed: $(VENV)/.torch pyproject.toml constraints.txt
	$(PIP) -e .
	rm -rf probgen.egg-info
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml constraints.txt
	$(PIP) -e ".[test,bench]"
	rm -rf probgen.egg-info
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/probgen tour

test: install-test
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -n $(JOBS) --dist loadgroup --nbmake --doctest-modules tests notebooks probgen

clean:
	rm -rf $(VENV) probgen-out .pytest_cache
