#!/bin/bash
# check.sh: the CUDA backend's checks and benchmarks on a lent GPU machine, in one call (issues 6, 20):
# the GPU tests (ops incl. Stable Diffusion's, samples of the cifar and tiny SD 1.x/2.x pipelines), then
# the SD 1.5 UNet beside diffusers (bench/sd_gpu_vs_torch.py); BENCH_CIFAR=1 adds the cifar benchmark.
# Prepared here by src/gpu/device/pack.sh; run there from the repository root:
#   run(command="bash src/gpu/device/check.sh", carry=[".device"], timeout_s=540)
# Logs go to $OUT (they come back); the exit code is the tests' verdict (the benchmark never fails).
set -uo pipefail
root=$(pwd)
d=/tmp/sower-device
out=${OUT:-/tmp/sower-device-out}
rm -rf "$d" && mkdir -p "$d" "$out"
tar -C "$d" -xJf "$root/.device/payload.tar.xz"
log=$out/check.log
exec > >(tee "$log") 2>&1
echo "== $(date -u) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# CUDA runtime, cuBLAS and NCCL from the machine: the toolkit, else PyTorch's wheels.
cudalibs=""
for name in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
  hit=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt /usr/local/lib -name "$name" 2>/dev/null | head -1)
  [[ -n $hit ]] && cudalibs="$cudalibs:$(dirname "$hit")" || echo "warning: $name not found"
done
export LD_LIBRARY_PATH="$d/lib$cudalibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX=$d/ompi PATH=$d/ompi/bin:$d/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMPI_MCA_rmaps_base_oversubscribe=1 PYTHONUNBUFFERED=1
ln -sf orterun "$d/ompi/bin/mpirun"
missing=$(ldd "$d/bin/sower" "$d/bin/libsower_cuda.so" | grep "not found")
[[ -z $missing ]] || { echo "missing libraries: $missing"; exit 1; }

# The formula-weight test models (tests/make_formula_models.cmake does the same at test time).
models=$d/models
for m in cifar mh_pipeline; do
  src=tests/data/diffusers/models/$m
  mkdir -p "$models/$m" && cp -r "$src"/. "$models/$m/"
  if [[ -f $models/$m/unet/config.json ]]; then unet=$models/$m/unet; names=""; else unet=$models/$m; names=--legacy-names; fi
  make_formula_checkpoint "$unet/config.json" "$unet/diffusion_pytorch_model.safetensors" $names >/dev/null
done

fail=0
# Each step has its own limit so that one hang cannot take the benchmark's (and the log's) time.
# ONLY_VARIANTS=1: no tests and no SD benchmark, the variants (and CPU_BENCH) alone (a quicker call).
step() { [[ -n ${ONLY_VARIANTS:-} ]] && return
         local limit=$1; shift; echo; echo "== $*"; local t0=$SECONDS; timeout "$limit" "$@"; local rc=$?
         echo "== rc=$rc in $((SECONDS - t0)) s: $1"; ((rc == 0)) || fail=1; }
step 60 test_gpu_selftest
step 120 test_gpu_ops --model "$models/cifar" --model tests/data/sd/tiny-sd1 --model tests/data/sd/tiny-sd2
# torch.Generator("cuda") (issue 20): torch's own noise on this GPU, then sower's against it, bit for bit
# (the reference comes back in $OUT: commit it as tests/data/torch_cuda_rng_reference.json).
step 120 python3 validate/make_torch_cuda_reference.py "$out/torch_cuda_rng_reference.json"
step 60 test_gpu_ops --small --precisions fp32 --torch-cuda-reference "$out/torch_cuda_rng_reference.json"
# ...and a render with it: DDPM draws every step; batch 8 and batch 3 must give the same bits.
torch_cuda_render() { sower sample tests/data/sd/tiny-sd1 --prompt "a red fox" --guidance 7.5 --scheduler ddpm \
  --seeds 0-7 --steps 5 --backend cuda --generator torch-cuda --force --batch "$1" -o "$out/torch-cuda-b$1.npy"; }
step 120 bash -c "$(declare -f torch_cuda_render); out=$out; torch_cuda_render 8 && torch_cuda_render 3 &&
  cmp $out/torch-cuda-b8.npy $out/torch-cuda-b3.npy && echo 'torch-cuda render: batch 8 = batch 3'"
step 150 python3 tests/test_gpu_sample.py "$d/bin/sower" mpirun "$models/cifar" 10 --scheduler ddpm
[[ -n ${CHECK_MULTIHEAD:-} ]] && step 90 python3 tests/test_gpu_sample.py "$d/bin/sower" mpirun "$models/mh_pipeline" 10 --eta 0.5
# Stable Diffusion (issue 20): text encoder on the host, UNet (cross-attention, GEGLU) and VAE on the GPU.
step 150 python3 tests/test_gpu_sample.py "$d/bin/sower" mpirun tests/data/sd/tiny-sd1 10 \
  --prompt "a watercolour of a lighthouse" --guidance 7.5 --scheduler pndm
step 150 python3 tests/test_gpu_sample.py "$d/bin/sower" mpirun tests/data/sd/tiny-sd2 10 \
  --prompt "an astronaut riding a horse" --guidance 5 --scheduler dpm++2m
# GPU_OPS=1 (issue 20): SD 1.5's heaviest operations one at a time, by every route sower has (tile loader and
# gemm16; fp32 flash and attention16), beside cuDNN's conv2d and torch's scaled_dot_product_attention, in
# GPU_OPS_PRECISIONS (default bf16,fp16): which kernel family keeps the forward from diffusers' (~1 min each).
if [[ -n ${GPU_OPS:-} ]]; then
  echo; echo "== GPU ops beside torch"
  timeout "${GPU_OPS_SECONDS:-240}" python3 bench/gpu_ops_vs_torch.py "$d/bin/bench_gpu_ops" \
    --precisions "${GPU_OPS_PRECISIONS:-bf16,fp16}" --seconds 0.3 || echo "gpu ops benchmark: rc $?"
fi
# The SD 1.5 UNet (512x512) with formula weights (3.4 GB), for the variants and the benchmark below.
sd=$d/sd15 && mkdir -p "$sd/unet" && cp bench/sd15_unet_config.json "$sd/unet/config.json" &&
  cp -r tests/data/sd/std-sd1/model_index.json tests/data/sd/std-sd1/scheduler "$sd/"
t0=$SECONDS
make_formula_checkpoint "$sd/unet/config.json" "$sd/unet/diffusion_pytorch_model.safetensors" >/dev/null &&
  echo "(SD 1.5 formula weights written in $((SECONDS - t0)) s)"
# Plug-in variants (pack.sh SOWER_VARIANTS): each one's speed beside the main build's, and whether
# its samples are the main build's bits (fp32 and tf32, cifar, 16 seeds, 3 DDIM steps, batch 8).
# VARIANT_SD=1: speeds of the SD 1.5 UNet at batch 2 and 32 (1 and 16 images with guidance) instead.
# VARIANT_PRECISIONS: the arithmetics timed (default "fp32 tf32"); the bits are compared in fp32, tf32, bf16.
variant_model=$models/cifar variant_batches="1 64 256"
[[ -n ${VARIANT_SD:-} ]] && variant_model=$sd variant_batches="2 32"
variant_line() { # DIR LABEL: one line of forward rates
  local line="$2:" b p r
  for p in ${VARIANT_PRECISIONS:-fp32 tf32}; do for b in $variant_batches; do
    r=$(timeout 60 "$1/bench_unet" "$variant_model" 1 $b 1.5 --backend cuda --precision $p 2>/dev/null|
        grep -o '[0-9.]* ms/forward' | awk -v b=$b '{printf "%.0f", b * 1000 / $1}')
    line="$line $p b$b ${r:-failed}"
  done; done
  echo "$line samples*steps/s"
}
variant_bits() { # DIR: fp32, tf32 and bf16 samples' md5
  local p
  for p in fp32 tf32 bf16; do
    timeout 60 "$1/sower" sample "$models/cifar" --seeds 0-15 --steps 3 --batch 8 --backend cuda --precision $p \
      -o "$1/$p.npy" 2>/dev/null && md5sum < "$1/$p.npy" | cut -c1-12 || echo failed
  done | paste -sd' '
}
if [[ -d $d/variants ]]; then
  echo; echo "== variants"
  mkdir -p "$d/variants/main" && cp "$d/bin/libsower_cuda.so" "$d/variants/main/"
  main_bits=""
  for v in main $(ls "$d/variants" | grep -vx main); do
    cp "$d/bin/sower" "$d/bin/bench_unet" "$d/bin/test_gpu_ops" "$d/variants/$v/"
    bits=$(variant_bits "$d/variants/$v"); [[ $v == main ]] && main_bits=$bits
    ops=$(timeout 60 "$d/variants/$v/test_gpu_ops" --model "$models/cifar" 2>&1 | tail -1)
    verdict=$([[ $bits == "$main_bits" ]] && echo same as main || echo DIFFERENT)
    [[ $bits == *failed* || $main_bits == *failed* ]] && verdict="not compared: a render failed"
    echo "$v: bits $bits ($verdict); $ops"
    variant_line "$d/variants/$v" "$v"
  done
  # VARIANT_NCU=1: where a forward's time goes (main build, cifar batch 256), kernel by kernel, from Nsight
  # Compute (src/gpu/device/profile_sd.sh does the same for SD 1.5).
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  for p in ${VARIANT_NCU:+fp32 tf32}; do
    timeout 60 "${ncu:-ncu}" --metrics gpu__time_duration.sum --launch-skip 200 --launch-count 300 --csv --page raw \
      "$d/bin/bench_unet" "$models/cifar" 1 256 0.2 --backend cuda $([[ $p == tf32 ]] && echo --tf32) \
      > "$out/ncu_$p.csv" 2>/dev/null
    python3 - "$out/ncu_$p.csv" "$p" <<'PY' || echo "ncu $p: no profile"
import csv, sys, collections, re
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))][1:]
t = collections.Counter()
for r in rows:
    t[re.sub(r"\(.*", "", r["Kernel Name"])] += float(r["gpu__time_duration.sum"].replace(",", ""))
total = sum(t.values())
print(f"ncu {sys.argv[2]} batch 256, {len(rows)} kernels, {total / 1e6:.2f} ms: " +
      ", ".join(f"{k} {v / total:.0%}" for k, v in t.most_common(8)))
PY
  done
fi

# Benchmark beside diffusers (pack.sh puts a diffusers wheel in .device/whl: the image lacks it).
if ! python3 -c "import diffusers" 2>/dev/null && ls "$root"/.device/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$root"/.device/whl/*.whl && export PYTHONPATH=/tmp/site
fi
mkdir -p "$d/benchbuild/bench" && cp "$d/bin/bench_unet" "$d/bin/libsower_cuda.so" "$d/benchbuild/bench/"
[[ -z ${ONLY_VARIANTS:-} && -f $sd/unet/diffusion_pytorch_model.safetensors ]] && echo && echo "== SD 1.5 benchmark" &&
  timeout "${SD_BENCH_SECONDS:-300}" python3 bench/sd_gpu_vs_torch.py "$d/benchbuild/bench/bench_unet" "$sd" \
    --seconds "${SD_BENCH_REPEAT:-1.5}" --images 1,4,16
rm -rf "$sd"
# CPU_BENCH=1 (issue 18): this machine's CPU beside torch on the cifar UNet (bench/unet_vs_torch.py, 2 threads;
# CPU_BENCH_KERNELS: the families, CPU_BENCH_ROUNDS (1), CPU_BENCH_NO_RENDER=1: forwards only), where it is an
# Intel one with AVX-512 (the build machine is AMD); the CPU is named either way. CPU_LAYERS=1 first times the cifar 3x3 convolutions beside torch's.
if [[ -n ${CPU_BENCH:-} ]]; then
  echo; echo "== CPU"; lscpu | grep -E "^(Model name|Vendor ID|Thread|Core|Socket|L2|L3)" ; grep -o -w -E "avx512[a-z_0-9]*|amx_[a-z0-9]*" /proc/cpuinfo | sort -u | paste -sd' '
  if grep -q GenuineIntel /proc/cpuinfo && grep -qw avx512f /proc/cpuinfo; then
    mkdir -p "$d/cpubuild/bench" && cp "$d/bin/bench_unet" "$d/bin/bench_sgemm" "$d/bin/bench_layers" "$d/cpubuild/bench/" &&
      cp "$d/bin/sower" "$d/cpubuild/"
    [[ -n ${CPU_LAYERS:-} ]] && timeout 90 python3 bench/layers_vs_torch.py "$d/cpubuild" --only cifar --rounds 1 \
      --seconds 0.5 --kernels "${CPU_BENCH_KERNELS:-auto}"
    timeout "${CPU_BENCH_SECONDS:-150}" python3 bench/unet_vs_torch.py "$d/cpubuild" "$models/cifar" --seconds 1 \
      --rounds "${CPU_BENCH_ROUNDS:-1}" ${CPU_BENCH_NO_RENDER:+--no-render} \
      --kernels "${CPU_BENCH_KERNELS:-auto}"
  fi
fi
[[ -n ${ONLY_VARIANTS:-} ]] && exit $fail
[[ -n ${BENCH_CIFAR:-} ]] || { echo; echo "== verdict: $([[ $fail == 0 ]] && echo all passed || echo FAILURES)"; exit $fail; }
echo; echo "== benchmark"
# The benchmark takes what is left of BENCH_UNTIL seconds since the start (default 420): 2 rounds
# (about 130 s on an H100), 1 after variants.
left=$(( ${BENCH_UNTIL:-420} - SECONDS )); ((left > 30)) || left=30
rounds=$([[ -d $d/variants ]] && echo 1 || echo 2)
timeout "$left" python3 bench/gpu_vs_torch.py "$d/benchbuild" "$models/cifar" --seconds 2 --rounds $rounds
echo; echo "== verdict: $([[ $fail == 0 ]] && echo all passed || echo FAILURES)"
exit $fail
