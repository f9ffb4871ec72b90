#!/bin/bash
# check.sh: the CUDA backend's checks and benchmark on a lent GPU machine, in one call (issue 6).
# Prepared here by gpu/device/pack.sh; run there from the repository root:
#   run(command="bash gpu/device/check.sh", carry=[".device"], timeout_s=540)
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
step() { local limit=$1; shift; echo; echo "== $*"; local t0=$SECONDS; timeout "$limit" "$@"; local rc=$?
         echo "== rc=$rc in $((SECONDS - t0)) s: $1"; ((rc == 0)) || fail=1; }
step 60 test_gpu_selftest
step 90 test_gpu_ops --model "$models/cifar"
step 150 python3 tests/test_gpu_sample.py "$d/bin/sower" mpirun "$models/cifar" 10 --scheduler ddpm
step 90 python3 tests/test_gpu_sample.py "$d/bin/sower" mpirun "$models/mh_pipeline" 10 --eta 0.5
# Benchmark beside diffusers (pack.sh puts a diffusers wheel in .device/whl: the image lacks it).
if ! python3 -c "import diffusers" 2>/dev/null && ls "$root"/.device/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$root"/.device/whl/*.whl && export PYTHONPATH=/tmp/site
fi
mkdir -p "$d/benchbuild/bench" && cp "$d/bin/bench_unet" "$d/bin/libsower_cuda.so" "$d/benchbuild/bench/"
echo; echo "== benchmark"
# The benchmark takes what is left of BENCH_UNTIL seconds since the start (default 420).
left=$(( ${BENCH_UNTIL:-420} - SECONDS )); ((left > 30)) || left=30
timeout "$left" python3 bench/gpu_vs_torch.py "$d/benchbuild" "$models/cifar" --seconds 2 --rounds 2
echo; echo "== verdict: $([[ $fail == 0 ]] && echo all passed || echo FAILURES)"
exit $fail
