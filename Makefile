# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make book   build the site into _build/html (sets up .venv first)
#   make test   run the whole test suite (sets up .venv and the Debian packages it needs first)
# Other targets: lab, exercises, grade, lock, clean (see `make help`).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ASSIGNMENT ?= ex02_batchnorm_forward
ASSIGNMENTS := $(notdir $(wildcard solutions/ex*))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Kernels come from the virtual environment, never from a user's ~/.local/share/jupyter.
export JUPYTER_PATH := $(CURDIR)/$(VENV)/share/jupyter
# ipykernel's debugger prints a warning on stderr at every kernel start without this.
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help venv kit solution-notebooks book test lab exercises experiments grade lock system-packages sandbox-tools clean

help:
	@printf '%s\n' \
	  'make book                  build the site into _build/html, with the student kit and one bundle per exercise' \
	  'make test                  run the whole test suite (sets up .venv and the Debian packages it needs)' \
	  'make lab                   a student-only environment (the kit, no course code) and JupyterLab' \
	  'make solution-notebooks    write solutions/exNN/*.ipynb from the MyST sources' \
	  'make kit                   build the student kit (bnkit wheel, in _build/kit/) and install it into .venv' \
	  'make exercises             regenerate exercises/ (the released notebooks) with nbgrader' \
	  'make experiments [SIZE=tiny|cpu|gpu] [MNIST=folder]   rerun the chapter experiments' \
	  'make grade ASSIGNMENT=exNN_topic [LMS=folder] [WORKERS=n] [DB_URL=...]' \
	  '                           grade in sandboxes: autograder/grades.csv, reports/<a>-summary.csv,' \
	  '                           reports/<a>-canvas.csv (Canvas Grades > Import), reports/<a>-class.html,' \
	  '                           feedback/<student>/<a>/ (see autograder/GRADING.md)' \
	  'make lock                  re-resolve requirements.txt from requirements.in' \
	  'make clean                 remove build outputs' \
	  '' \
	  'LMS=folder: the files of the LMS'"'"'s "download all submissions", one student per LMS id:' \
	  '  Canvas      <name>_<userid>_<submissionid>_<file>.ipynb|.zip  (<name>_late_<userid>_... when late)' \
	  '  Moodle      <Full Name>_<participantid>_assignsubmission_file_<file> (or such a folder)' \
	  '  Blackboard  <Assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>' \
	  '  plain       <student>.ipynb, <student>.zip or <student>_<file> (<student> must be a unique login)' \
	  'Without LMS: nbgrader'"'"'s autograder/submitted/<student>/<assignment>/*.ipynb.'

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

# The student kit's wheel (checks and their fixtures, no answers), built from kit/ and the cases in
# src/bncourse/checks/, and installed into .venv so that the notebooks and the grader use it too.
KIT_WHEEL_DIR := _build/kit
KIT_SOURCES := $(shell find kit src/bncourse -name '*.py' -o -name '*.toml' -o -name '*.md' 2>/dev/null | grep -v egg-info)
$(VENV)/.kit-installed: $(VENV)/.installed $(KIT_SOURCES)
	rm -rf kit/build kit/src/*.egg-info
	PYTHONPATH=kit/src $(BIN)/python -m bncourse.kit $(KIT_WHEEL_DIR)   # the kit being built, not an installed one
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(KIT_WHEEL_DIR)/bnkit-*.whl
	@touch $@

kit: $(VENV)/.kit-installed

# The execution cache keys on a chapter's own code only, so a change to the course package (an
# experiment, the figure style) or to a recorded result executes every chapter again.
BOOK_STAMP := _build/.executed-with-package
BOOK_INPUTS := src kit/src chapters/results
book: kit
	@if [ -d _build/.jupyter_cache ] && { [ ! -f $(BOOK_STAMP) ] || [ -n "$$(find $(BOOK_INPUTS) -type f \
	    -newer $(BOOK_STAMP) -not -path '*/__pycache__/*' -not -path '*.egg-info/*' | head -n 1)" ]; }; then \
	  echo "The course package or a recorded result changed since the last build: executing every chapter."; \
	  rm -rf _build/.jupyter_cache _build/.doctrees; fi   # doctrees too, or Sphinx skips unchanged pages
	@mkdir -p _build && touch $(BOOK_STAMP).new   # before the build: a file edited during it counts as changed
	$(BIN)/jupyter-book build .
	@mv $(BOOK_STAMP).new $(BOOK_STAMP)
	@echo "The site is at file://$(CURDIR)/_build/html/index.html"

# Debian packages, installed with apt when missing: chromium for the browser tests (Playwright
# drives it; no browser download), bubblewrap for the grading sandbox, postgresql for the
# shared-gradebook test. setpriv, prlimit and runuser come with util-linux.
APT_INSTALL = $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
system-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT_INSTALL) $$missing; fi

sandbox-tools:
	@command -v bwrap >/dev/null || { $(APT_INSTALL) bubblewrap; }

test: kit solution-notebooks system-packages
	$(BIN)/python -m pytest

# A student's environment, apart from the instructor's: JupyterLab, NumPy, matplotlib, torch and the
# student kit, nothing else (no nbgrader, no book builder, no reference implementations).
STUDENT_VENV := .venv-student
$(STUDENT_VENV)/.installed: requirements-student.txt $(VENV)/.kit-installed
	@test -x $(STUDENT_VENV)/bin/python || $(PYTHON) -m venv $(STUDENT_VENV)
	$(STUDENT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(STUDENT_VENV)/bin/python -m pip install --quiet -r requirements-student.txt
	$(STUDENT_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps $(KIT_WHEEL_DIR)/bnkit-*.whl
	@touch $@

# Root (a container, say) needs --allow-root; JupyterLab refuses to start without it.
lab: $(STUDENT_VENV)/.installed
	@if [ "$$(id -u)" = 0 ]; then echo "Running as root (in a container?): starting JupyterLab with --allow-root."; fi
	JUPYTER_PATH=$(CURDIR)/$(STUDENT_VENV)/share/jupyter $(STUDENT_VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) exercises/

# Chapter 4's training experiments and Chapter 7's batch norm bandwidth measurement on this machine's
# device (CUDA when available): writes chapters/results/.
# SIZE=tiny|cpu|gpu overrides the default (gpu on CUDA, cpu otherwise); MNIST=folder uses real MNIST.
experiments: venv
	$(BIN)/python -m bncourse.experiments.bn_training $(if $(SIZE),--size $(SIZE)) $(if $(MNIST),--mnist $(MNIST))
	$(BIN)/python -m bncourse.experiments.bn_bandwidth $(if $(SIZE),--size $(SIZE))

# solutions/<ex>/<ex>.md (MyST markdown, what authors edit) -> <ex>.ipynb beside it (git-ignored), for nbgrader.
solution-notebooks: venv
	$(BIN)/python -m bncourse.solution_sources

# exercises/ is what nbgrader makes of solutions/ (a test checks they agree).
exercises: solution-notebooks
	cd autograder && for a in $(ASSIGNMENTS); do ../$(BIN)/nbgrader generate_assignment $$a --force --no-db || exit 1; done

# Optional: LMS=folder of downloads, WORKERS=n (default: cores), DB_URL=postgresql+psycopg://...
grade: solution-notebooks sandbox-tools
	$(BIN)/python -m bncourse.grading $(ASSIGNMENT) $(if $(LMS),--lms $(LMS)) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(DB_URL),--db-url $(DB_URL))

# Re-resolve the pinned lock after editing requirements.in.
lock:
	rm -rf /tmp/bncourse-lock && $(PYTHON) -m venv /tmp/bncourse-lock
	/tmp/bncourse-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Fully pinned lock of requirements.in, made by 'make lock' (pip freeze); installs use this file."; \
	  /tmp/bncourse-lock/bin/pip freeze --all | grep -v '^pip==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.txt

clean:
	rm -rf _build
