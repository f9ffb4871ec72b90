#!/bin/bash
# pack.sh: prepares, on this Debian 12 build machine, what src/gpu/device/check.sh needs on a lent GPU
# machine (whose image has CUDA, PyTorch and Python but not Open MPI, parallel HDF5, BLIS or
# libyaml): a Release build for sm_80/sm_90 and the shared libraries it needs that such an image
# lacks (no glibc, no CUDA: those are the machine's own), with Open MPI's runtime, relocatable
# through OPAL_PREFIX. Everything lands in .device/ (ignored by git: add it to .git/info/exclude),
# which the device call carries:  run(command="bash src/gpu/device/check.sh", carry=[".device"]).
# usage: bash src/gpu/device/pack.sh            (from the repository root; about 2 minutes)
# To measure other builds of the CUDA plug-in in the same device call, name them in SOWER_VARIANTS,
# separated by ';', each NAME[@GIT_REVISION][=CUDA_FLAGS]: that revision's tree (else this one),
# built with those extra flags; e.g. SOWER_VARIANTS='before@HEAD;tk32@gpu-gemm-tk=-DSOWER_GEMM_TK_TF32=32'.
# check.sh then times each beside the main build and compares their samples' bits with it. sm_90 only.
set -euo pipefail
root=$(pwd)
out=$(mktemp -d)/payload
build=$out/build
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
mkdir -p "$out/lib" "$out/ompi"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOWER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="80;90" \
      -DSOWER_TESTS=ON >/dev/null
cmake --build "$build" --target sower sower_cuda test_gpu_selftest test_gpu_ops bench_unet bench_sgemm \
      bench_layers bench_gpu_ops make_formula_checkpoint
# Only the programs, the CUDA plug-in (found beside them) and the test models' configs travel
# (weights are regenerated there: 143 MB).
keep=(sower libsower_cuda.so tests/test_gpu_selftest tests/test_gpu_ops bench/bench_unet bench/bench_sgemm
      bench/bench_layers bench/bench_gpu_ops tests/make_formula_checkpoint)
mkdir -p "$out/bin"
for f in "${keep[@]}"; do cp "$build/$f" "$out/bin/"; done
rm -rf "$build"

IFS=';' read -ra variants <<< "${SOWER_VARIANTS:-}"
for v in "${variants[@]}"; do
  [[ -n $v ]] || continue
  src=. flags="" name=${v%%[=@]*} rev="" spec=$v
  [[ $v == *=* ]] && flags=${v#*=} && v=${v%%=*}
  [[ $v == *@* ]] && rev=${v#*@}
  if [[ -n $rev ]]; then
    src=$(mktemp -d) && git archive "$rev" | tar -x -C "$src"
  fi
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOWER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DCMAKE_CUDA_FLAGS="$flags" -DSOWER_TESTS=OFF >/dev/null
  cmake --build "$build" --target sower_cuda >/dev/null
  mkdir -p "$out/variants/$name" && cp "$build/libsower_cuda.so" "$out/variants/$name/"
  rm -rf "$build"; [[ $src == . ]] || rm -rf "$src"
  echo "pack.sh: variant $name ($spec) built"
done

# Shared libraries the programs and Open MPI's plugins need, minus glibc's and CUDA's.
ompi=/usr/lib/x86_64-linux-gnu/openmpi
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libgcc_s\.|libstdc\+\+|libcuda|libcublas|libnccl|libnvidia)'
deps() { ldd "$@" 2>/dev/null | awk '$3 ~ /^\// {print $3}' | sort -u; }
plugins=$(find "$ompi/lib/openmpi3" -name '*.so')
for lib in $(deps "$out"/bin/* $plugins /usr/bin/orterun /usr/bin/orted); do
  base=$(basename "$lib")
  [[ $base =~ $skip ]] || cp -L "$lib" "$out/lib/"
done
# Open MPI laid out under a prefix as Debian's build expects it relative to OPAL_PREFIX.
mkdir -p "$out/ompi/bin" "$out/ompi/lib/x86_64-linux-gnu/openmpi/lib" "$out/ompi/share"
cp -L /usr/bin/orterun /usr/bin/orted "$out/ompi/bin/"
cp -a "$ompi/lib/openmpi3" "$out/ompi/lib/x86_64-linux-gnu/openmpi/lib/"
cp -a /usr/share/openmpi "$out/ompi/share/"
cp -a /usr/share/pmix "$out/ompi/share/" 2>/dev/null || true
rm -rf "$root/.device" && mkdir -p "$root/.device/whl"
tar -C "$out" -cJf "$root/.device/payload.tar.xz" .
rm -rf "$(dirname "$out")"
python3 -m pip download -q --no-deps --only-binary=:all: diffusers -d "$root/.device/whl" ||
  echo "pack.sh: no diffusers wheel (no PyPI): the benchmark will show sower alone"
du -sh "$root/.device" "$root/.device"/*
echo "pack.sh: ready; carry .device and run src/gpu/device/check.sh there"
