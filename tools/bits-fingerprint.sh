#!/bin/bash
# Prints md5 digests of the numbers sower produces on the committed test models: `sower noise`,
# `sower sample` (ddim, ddim eta>0, ddpm; several batch/thread shapes) and `sower run` (1 and 2 ranks,
# the latents dataset and the per-row digests). Run it before and after a refactor; the two listings
# must be identical (issue 15: "bits unchanged"). usage: tools/bits-fingerprint.sh BUILD_DIR
# mh_pipeline's weights come from the tests' fixture (ctest -R make_formula_models), run here if need be.
# Needs python3 with h5py (Debian: python3-h5py) to read the HDF5 datasets.
set -euo pipefail
build=$(cd "$1" && pwd); here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
py=/usr/bin/python3; [[ -x $py ]] || py=python3
m=$here/tests/data/diffusers/models
s=$build/sower
[[ -d $build/tests/models/mh_pipeline ]] || ctest --test-dir "$build" -R make_formula_models >/dev/null

"$s" noise --seed 42 --shape 2,3,4,4 --quiet -o "$tmp/noise.bin"
echo "noise seed=42: $(md5sum < "$tmp/noise.bin" | cut -c1-32)"
for args in "mono_v --scheduler ddim --steps 5 --batch 3 --threads 1" \
            "mono_v --scheduler ddim --steps 5 --eta 0.7 --batch 4 --threads 2" \
            "mono_v --scheduler ddpm --steps 6 --batch 2 --threads 2" \
            "mh_pipeline --scheduler ddim --steps 3 --batch 5 --threads 2" \
            "legacy_flat --scheduler ddpm --steps 3 --batch 1 --threads 1"; do
    set -- $args; model=$1; shift; dir=$m/$model
    [[ -f $dir/unet/diffusion_pytorch_model.safetensors || -f $dir/diffusion_pytorch_model.safetensors ]] || dir=$build/tests/models/$model
    "$s" sample "$dir" --seeds 0-6,4294967303 "$@" -o "$tmp/s.npy" >/dev/null 2>&1
    echo "sample $model $*: $(md5sum < "$tmp/s.npy" | cut -c1-32)"
done
mkdir -p "$tmp/job"; sed "s#\.\./diffusers/models#$m#" "$here/tests/data/manifests/run_small.yaml" > "$tmp/job/job.yaml"
for np in 1 2; do
    (cd "$tmp/job" && mpirun -np $np "$s" run job.yaml -o "r$np.h5" >/dev/null 2>&1)
    "$py" - "$tmp/job/r$np.h5" "$np" <<'PY'
import h5py, hashlib, sys
f = h5py.File(sys.argv[1], "r")
for name in sorted(f):
    if isinstance(f[name], h5py.Dataset) and name in ("latents", "seeds", "digest", "done"):
        print(f"run np={sys.argv[2]} /{name}: {hashlib.md5(f[name][()].tobytes()).hexdigest()}")
PY
done
