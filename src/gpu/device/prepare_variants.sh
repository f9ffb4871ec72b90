#!/bin/bash
# prepare_variants.sh: packs, for one device call, the CUDA plug-in variants issue 20 left to time (docs/gpu.md,
# "SD 1.5 speed"), in two sets that each fit one call:
#   sixteen (default): the bf16/fp16 routes built as the default: g16 (gemm16: BK 32, 2 stages), g16s4 (BK 16,
#     4 stages), g16fa (with the fp32 flash attention's resident queries), all with the main build's bits (which
#     test_gpu_ops's route checks show), and g16a16 (with attention16 too: other bf16 bits, "DIFFERENT" is
#     expected there);
#   tile: the tile loader's and fp32 attention's build constants that keep the main build's bits (vec, db32,
#     vecdb32, fa), and softmax64, the flash attention's softmax on 64 threads as it was before 8ec0236 (other
#     bits, for timing only).
# Then, there:
#   run(command='GPU_OPS=1 ONLY_VARIANTS=1 VARIANT_SD=1 VARIANT_PRECISIONS="bf16 fp16" bash src/gpu/device/check.sh',
#       carry=[".device"], timeout_s=540)
# (GPU_OPS=1 first times SD 1.5's heaviest operations one by one, every route beside torch: about 2 minutes; the
# variants take about 40 s each; for the tile set, VARIANT_PRECISIONS="tf32 bf16".)
# Add CPU_BENCH=1 CPU_LAYERS=1 CPU_BENCH_KERNELS=auto,haswell CPU_BENCH_ROUNDS=2 CPU_BENCH_NO_RENDER=1 for issue 18's
# Intel row (about 3 minutes more: then leave GPU_OPS out or give it its own call).
# usage: bash src/gpu/device/prepare_variants.sh [sixteen|tile]   (from the repository root)
set -euo pipefail
case ${1:-sixteen} in
  sixteen) export SOWER_VARIANTS="g16=-DSOWER_GEMM16_DEFAULT=1;\
g16s4=-DSOWER_GEMM16_DEFAULT=1 -DSOWER_GEMM16_BK=16 -DSOWER_GEMM16_STAGES=4;\
g16fa=-DSOWER_GEMM16_DEFAULT=1 -DSOWER_FA_RESIDENT=1;\
g16a16=-DSOWER_GEMM16_DEFAULT=1 -DSOWER_ATTENTION16_DEFAULT=1" ;;
  tile) export SOWER_VARIANTS="softmax64=-DSOWER_FA_SOFTMAX_64=1;vec=-DSOWER_GEMM_VEC=1;\
db32=-DSOWER_GEMM_STAGES=2 -DSOWER_GEMM_TK16=32;vecdb32=-DSOWER_GEMM_VEC=1 -DSOWER_GEMM_STAGES=2 -DSOWER_GEMM_TK16=32;\
fa=-DSOWER_FA_RESIDENT=1" ;;
  *) echo "usage: bash src/gpu/device/prepare_variants.sh [sixteen|tile]" >&2; exit 2 ;;
esac
bash src/gpu/device/pack.sh
