#!/bin/bash
# (scripts/device_crossval/README.md: copied into .xfer1/ beside its wheels, run there as `bash .xfer1/1_wheels.sh`)
# device call 1: the bulk of the wheels (SimpleITK ...) into /tmp/site1, then a quick look at the machine
set -e
[ -n "$SKIP_PIP" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site1 .xfer1/*.whl
export PYTHONPATH=$PWD:/tmp/site1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch, SimpleITK, monai, submitit, nibabel; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sitk', SimpleITK.Version_VersionString())"
nproc; free -g | head -2; date -u
