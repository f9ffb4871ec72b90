#!/bin/bash
# profile_sd.sh: where an SD 1.5 UNet forward's GPU time goes, kernel by kernel (Nsight Compute's
# gpu__time_duration), on a lent GPU machine: the payload of pack.sh, one forward after a warm one.
#   run(command="bash src/gpu/device/profile_sd.sh", carry=[".device"], timeout_s=300)
# PROFILE_CASES: "BATCH[:tf32] ..." (default "2 32 32:tf32"); PROFILE_DETAIL=1 adds stall reasons (below).
# Prints one line per case: total kernel
# time and the 10 largest shares by kernel name. Never fails the call for a missing profiler.
set -uo pipefail
d=/tmp/sower-device
out=${OUT:-/tmp/sower-device-out}
rm -rf "$d" && mkdir -p "$d" "$out"
tar -C "$d" -xJf .device/payload.tar.xz
cudalibs=""
for name in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
  hit=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt /usr/local/lib -name "$name" 2>/dev/null | head -1)
  [[ -n $hit ]] && cudalibs="$cudalibs:$(dirname "$hit")"
done
export LD_LIBRARY_PATH="$d/lib$cudalibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PATH=$d/bin:$PATH
sd=$d/sd15 && mkdir -p "$sd/unet" && cp bench/sd15_unet_config.json "$sd/unet/config.json" &&
  cp -r tests/data/sd/std-sd1/model_index.json tests/data/sd/std-sd1/scheduler "$sd/"
make_formula_checkpoint "$sd/unet/config.json" "$sd/unet/diffusion_pytorch_model.safetensors" >/dev/null
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[[ -n $ncu ]] || { echo "no ncu on this machine"; exit 0; }
for case in ${PROFILE_CASES:-2 32 32:tf32}; do
  b=${case%%:*}; flag=$([[ $case == *:tf32 ]] && echo --tf32)
  # bench_unet with a tiny time: its untimed forward and one timed forward, every kernel of both.
  timeout 240 "$ncu" --metrics gpu__time_duration.sum --launch-count 4000 \
    --csv --page raw bench_unet "$sd" 1 "$b" 0.01 --backend cuda $flag > "$out/ncu_$b${flag:+_tf32}.csv" 2>"$out/ncu_err.txt"
  python3 - "$out/ncu_$b${flag:+_tf32}.csv" "batch $b ${flag:-fp32}" <<'PY' || echo "$case: no profile: $(tail -3 "$out/ncu_err.txt")"
import csv, sys, collections, re
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))][1:]
t, n = collections.Counter(), collections.Counter()
for r in rows:
    k = re.sub(r"\(.*", "", r["Kernel Name"])
    t[k] += float(r["gpu__time_duration.sum"].replace(",", "")); n[k] += 1
total = sum(t.values())
print(f"{sys.argv[2]} (2 forwards): {len(rows)} kernels, {total / 1e6:.2f} ms: " +
      ", ".join(f"{k} {v / total:.0%} ({n[k]}x, {v / 1e6:.1f} ms)" for k, v in t.most_common(10)))
PY
done

# PROFILE_DETAIL=1: why the largest kernels are slow, not only how long they take: Nsight Compute's
# speed-of-light, occupancy, warp-state (stall reasons) and memory sections for one launch each of the
# 128-tile fp32 product, the 64-tile one and the head-width-40 flash attention, at batch 32.
if [[ -n ${PROFILE_DETAIL:-} ]]; then
  for kernel in 'regex:gemm_kernel<128, Fp32' 'regex:gemm_kernel<64, Fp32' 'regex:attention_heads_kernel<3>'; do
    echo; echo "== detail: $kernel"
    timeout 120 "$ncu" --kernel-name-base demangled --kernel-name "$kernel" --launch-skip 20 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
      --section LaunchStats bench_unet "$sd" 1 32 0.01 --backend cuda 2>&1 |
      grep -E "Duration|Throughput|Occupancy|Registers|Shared Memory|Stall|Warp Cycles|Issue|Block Limit|Bank" | head -40
  done
fi
