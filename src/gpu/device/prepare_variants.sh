#!/bin/bash
# prepare_variants.sh: packs, for one device call, the CUDA plug-in variants issue 20 left to time (docs/gpu.md,
# "SD 1.5 speed"): the flash attention's softmax on 64 threads as it was before 8ec0236 (SOWER_FA_SOFTMAX_64: other
# bits, for timing only), and the GEMM/attention build constants that keep the main build's bits. Then, there:
#   run(command='ONLY_VARIANTS=1 VARIANT_SD=1 VARIANT_PRECISIONS="tf32 bf16" bash src/gpu/device/check.sh',
#       carry=[".device"], timeout_s=400)
# Add CPU_BENCH=1 CPU_LAYERS=1 CPU_BENCH_KERNELS=auto,haswell CPU_BENCH_ROUNDS=2 CPU_BENCH_NO_RENDER=1 for issue 18's
# Intel row (about 3 minutes more). usage: bash src/gpu/device/prepare_variants.sh   (from the repository root)
set -euo pipefail
export SOWER_VARIANTS="softmax64=-DSOWER_FA_SOFTMAX_64=1;vec=-DSOWER_GEMM_VEC=1;db32=-DSOWER_GEMM_STAGES=2 -DSOWER_GEMM_TK16=32;\
vecdb32=-DSOWER_GEMM_VEC=1 -DSOWER_GEMM_STAGES=2 -DSOWER_GEMM_TK16=32;fa=-DSOWER_FA_RESIDENT=1"
bash src/gpu/device/pack.sh
