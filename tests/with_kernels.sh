#!/bin/sh
# with_kernels.sh FAMILY COMMAND [ARGS...]: runs COMMAND with BLIS's FAMILY kernels forced (SOWER_KERNELS),
# so that the correctness checks hold on every family sower may pick, not only this CPU's default;
# exit 77 (skipped) where this CPU lacks the family's instructions (skx: AVX-512 F, DQ, BW, VL;
# haswell and BLIS's AMD families zen3, zen2, zen: AVX2 and FMA).
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
SOWER_KERNELS=$family exec "$@"
