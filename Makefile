# Quick start: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# CPU machines: keep nnU-Net's data-augmentation and export workers in bounds (each imports torch).
export nnUNet_n_proc_DA ?= 2
export nnUNet_def_n_proc ?= 2
export nnUNet_compile ?= false

.PHONY: install demo test speed gpu-check clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nnUNetv2_sam_demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

speed: $(STAMP)
	$(BIN)/nnUNetv2_sam_speed --docs docs/performance.md

# On a CUDA machine: speed at the paper's settings + short trainings on the real BraTS cases with nnU-Net's
# defaults (compile on) -> docs/performance.md (GPU section), docs/gpu_check.md. GPU_CHECK_ARGS e.g.
# --data ../shared/data/real, --sam-checkpoint sam_vit_b_01ec64.pth, --dry-run, --cpu-smoke.
gpu-check: $(STAMP)
	$(BIN)/nnUNetv2_sam_gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info build demo_output
