#!/bin/sh
# with_kernels.sh FAMILY [--unless-default SOWER MODEL_DIR] COMMAND [ARGS...]: runs COMMAND with BLIS's
# FAMILY kernels forced (SOWER_KERNELS), so that the correctness checks hold on every family sower may pick,
# not only this CPU's default; exit 77 (skipped) where this CPU lacks the family's instructions (skx:
# AVX-512 F, DQ, BW, VL; haswell and BLIS's AMD families zen3, zen2, zen: AVX2 and FMA), and, with
# --unless-default, where FAMILY is what the plain tests run here anyway (`SOWER info MODEL_DIR` names it, in
# this environment: sower's choice for this CPU, or SOWER_KERNELS if the caller set it).
family=$1
shift
flags=$(grep -m1 '^flags' /proc/cpuinfo)
case $family in
  skx) need="avx512f avx512dq avx512bw avx512vl" ;;
  haswell | zen3 | zen2 | zen) need="avx2 fma" ;;
  *) echo "with_kernels.sh: unknown family '$family'" >&2; exit 2 ;;
esac
for f in $need; do
  case " $flags " in
    *" $f "*) ;;
    *) echo "this CPU lacks $f: the $family kernels are not tested here"; exit 77 ;;
  esac
done
if [ "$1" = --unless-default ]; then
  kernels=$("$2" info "$3" | grep -m1 'CPU kernels:') || {
    echo "with_kernels.sh: '$2 info $3' names no CPU kernels" >&2; exit 2; }
  shift 3
  case "$kernels" in
    *"BLIS "*" $family ("*) echo "$family is this CPU's default ($kernels): the plain test runs it"; exit 77 ;;
  esac
fi
SOWER_KERNELS=$family exec "$@"
