#!/bin/bash
# Orchestration overhead, HDF5 write throughput against raw disk bandwidth, and 1 -> 2 rank scaling,
# in one run on this machine. usage: bench/run_vs_sample.sh BUILD_DIR [SEEDS] [STEPS]
# Timing only, never asserts. Uses the small committed model (tests/data/diffusers/models/mono_v).
set -euo pipefail
build=$1; seeds=${2:-512}; steps=${3:-20}
here=$(cd "$(dirname "$0")/.." && pwd); tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMPI_MCA_rmaps_base_oversubscribe=1
model=$here/tests/data/diffusers/models/mono_v
cat > "$tmp/job.yaml" <<YAML
sower: 1
name: overhead
model: $model
pipeline: {scheduler: ddim, steps: $steps, batch: 8}
seeds: {ranges: [{start: 0, count: $seeds}]}
output: {path: out.h5}
verify: {count: 16}
YAML
echo "== disk: dd 256 MiB (page cache) and with fdatasync"
dd if=/dev/zero of="$tmp/dd.bin" bs=1M count=256 2>&1 | tail -1
dd if=/dev/zero of="$tmp/dd.bin" bs=1M count=256 conv=fdatasync 2>&1 | tail -1
echo "== HDF5 writer (h5out, 3x32x32 rows = 12 KiB, flushes per batch)"
"$build/bench/bench_h5write" "$tmp/w.h5" 20000 8
"$build/bench/bench_h5write" "$tmp/w.h5" 20000 64
echo "== render only: sower sample, $seeds seeds x $steps steps, 2 threads"
s=$(date +%s.%N); "$build/sower" sample "$model" --seeds 0-$((seeds - 1)) --steps "$steps" --batch 8 --threads 2 --force -o "$tmp/s.npy" 2>/dev/null
e=$(date +%s.%N); echo "sample: $(echo "$e - $s" | bc) s"
for np in 1 2; do
  echo "== sower run, $np rank(s) (threads per rank = 2 / ranks)"
  s=$(date +%s.%N)
  if [[ $np == 1 ]]; then "$build/sower" run "$tmp/job.yaml" -o "$tmp/r$np.h5" 2>&1 | grep -E "timings|rows on"
  else mpirun -np $np "$build/sower" run "$tmp/job.yaml" -o "$tmp/r$np.h5" 2>&1 | grep -E "timings|rows on"; fi
  e=$(date +%s.%N); echo "run wall (incl. MPI start): $(echo "$e - $s" | bc) s"
done
