#!/bin/bash
# prepare_variants.sh: packs, for one device call, the CUDA plug-in variants issue 20 left to time (docs/gpu.md,
# "SD 1.5 speed"): the flash attention's softmax on 64 threads as it was before 8ec0236 (SOWER_FA_SOFTMAX_64: other
# bits, for timing only), the GEMM/attention build constants that keep the main build's bits, and gemm16's
# pipelined bf16/fp16 route as the default (g16: BK 32, 2 stages; g16s4: BK 16, 4 stages; g16fa: with the resident
# flash attention; the same bits as the main build, which test_gpu_ops's route checks show), and with it the
# tensor-core attention for bf16/fp16 (g16a16: other bf16 bits, "DIFFERENT" is expected there). Then, there:
#   run(command='GPU_OPS=1 ONLY_VARIANTS=1 VARIANT_SD=1 VARIANT_PRECISIONS="tf32 bf16" bash src/gpu/device/check.sh',
#       carry=[".device"], timeout_s=540)
# (GPU_OPS=1 first times SD 1.5's heaviest operations one by one, every route beside torch: about 2 minutes.)
# Add CPU_BENCH=1 CPU_LAYERS=1 CPU_BENCH_KERNELS=auto,haswell CPU_BENCH_ROUNDS=2 CPU_BENCH_NO_RENDER=1 for issue 18's
# Intel row (about 3 minutes more). usage: bash src/gpu/device/prepare_variants.sh   (from the repository root)
set -euo pipefail
export SOWER_VARIANTS="softmax64=-DSOWER_FA_SOFTMAX_64=1;vec=-DSOWER_GEMM_VEC=1;db32=-DSOWER_GEMM_STAGES=2 -DSOWER_GEMM_TK16=32;\
vecdb32=-DSOWER_GEMM_VEC=1 -DSOWER_GEMM_STAGES=2 -DSOWER_GEMM_TK16=32;fa=-DSOWER_FA_RESIDENT=1;\
g16=-DSOWER_GEMM16_DEFAULT=1;g16s4=-DSOWER_GEMM16_DEFAULT=1 -DSOWER_GEMM16_BK=16 -DSOWER_GEMM16_STAGES=4;\
g16fa=-DSOWER_GEMM16_DEFAULT=1 -DSOWER_FA_RESIDENT=1;\
g16a16=-DSOWER_GEMM16_DEFAULT=1 -DSOWER_ATTENTION16_DEFAULT=1"
bash src/gpu/device/pack.sh
