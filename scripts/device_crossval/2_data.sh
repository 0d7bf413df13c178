#!/bin/bash
# (scripts/device_crossval/README.md: copied into .xfer2/ beside its wheels, run there as `bash .xfer2/2_data.sh`)
# device call 2: blosc2 + cc3d into /tmp/site2, the 1.5 mm proxy (dataset 502) with the CPU runs' plans and 3-fold split, preprocessing
set -e
[ -n "$SKIP_PIP" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site2 .xfer2/*.whl
export PYTHONPATH=$PWD:/tmp/site1:/tmp/site2 nnUNet_raw=/tmp/gpu128/raw nnUNet_preprocessed=/tmp/gpu128/pre nnUNet_results=/tmp/gpu128/res
mkdir -p /tmp/gpu128 && tar xf .xfer2/data.tar -C /tmp/gpu128
NP=${NP:-12}
for plans in nnUNetSAMPlans nnUNetPlans; do
  python3 -c "from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import preprocess_entry; preprocess_entry()" \
    -d 502 -plans_name $plans -c 2d -np $NP
done
du -sh /tmp/gpu128/pre/Dataset502_BraTSProxy/*
python3 -c "import blosc2, cc3d, nnunetv2.run.run_training, nnunetv2.inference.predict_from_raw_data, nnunet_sam_adapter.cli.benchmark; print('imports ok')"
date -u
