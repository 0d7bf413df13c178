# Quick start: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# CPU machines: keep nnU-Net's data-augmentation and export workers in bounds (each imports torch).
export nnUNet_n_proc_DA ?= 2
export nnUNet_def_n_proc ?= 2
export nnUNet_compile ?= false

.PHONY: install demo test test-all test-precision speed gpu-check clean

install: $(STAMP)

# pip downloads whatever this machine's disk does not hold (tens of packages, a CUDA library of ~50 MB among
# them): a dropped connection must not fail the set-up. pip resumes a partial file (PIP_RESUME_RETRIES, read by
# pip >= 25.1, ignored by older ones) and a failed install is run again, the files it finished coming from pip's
# cache. After PIP_TRIES failed tries (at least one try) the set-up stops, pip's error above its line.
export PIP_RESUME_RETRIES ?= 20
export PIP_RETRIES ?= 10
PIP_TRIES ?= 3
PIP_RETRY_WAIT_S ?= 30
pip_install = try=0; until $(BIN)/python -m pip install $(1); do \
	  try=$$((try + 1)); \
	  if [ "$$try" -ge $(PIP_TRIES) ]; then echo "make install: pip install $(1) failed $$try times" >&2; exit 1; fi; \
	  echo "make install: pip install $(1) failed (try $$try of $(PIP_TRIES)); again in $(PIP_RETRY_WAIT_S) s" >&2; \
	  sleep $(PIP_RETRY_WAIT_S); \
	done

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call pip_install,--upgrade pip)
	$(call pip_install,-e '.[test]')
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nnUNetv2_sam_demo

# `make test`: the fast suite (<= 10 min of pytest on 2 cores). `make test-all`: everything, the end-to-end
# trainings, SLURM, compile, DDP and mixed-precision tests included (CI runs both, and test-precision).
HEAVY := slow or slurm or compile or ddp or mixed_precision
PYTEST_ARGS ?= --durations=20
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not ($(HEAVY))" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The suite without the end-to-end trainings and SLURM, once as a CPU with native bf16 (the networks' default
# is then bf16 autocast) and once as one without (fp32), whatever this CPU is (model/execution.py,
# NNSAM_CPU_NATIVE_BF16): a test that compares numbers must pin its precision or use that precision's tolerance.
PRECISION_SELECTION := not (slow or slurm)
test-precision: $(STAMP)
	NNSAM_CPU_NATIVE_BF16=1 $(BIN)/python -m pytest -q -m "$(PRECISION_SELECTION)" $(PYTEST_ARGS)
	NNSAM_CPU_NATIVE_BF16=0 $(BIN)/python -m pytest -q -m "$(PRECISION_SELECTION)" $(PYTEST_ARGS)

speed: $(STAMP)
	$(BIN)/nnUNetv2_sam_speed --docs docs/performance.md

# On a CUDA machine: speed at the paper's settings + short trainings on the real BraTS cases with nnU-Net's
# defaults (compile on) -> docs/performance.md (GPU section), docs/gpu_check.md. GPU_CHECK_ARGS e.g.
# --data ../shared/data/real, --sam-checkpoint sam_vit_b_01ec64.pth, --dry-run, --cpu-smoke.
gpu-check: $(STAMP)
	$(BIN)/nnUNetv2_sam_gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info build demo_output
