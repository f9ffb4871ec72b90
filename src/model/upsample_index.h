/* upsample_index.h: which input row (or column) an output row of torch's nearest upsampling reads,
 * shared by the CPU backend and the CUDA kernel so both move the same values.
 *
 * torch's F.interpolate(x, size=..., mode="nearest") (UpSample.h nearest_idx and
 * nearest_neighbor_compute_source_index, the same on CUDA): an output twice the input reads
 * dst >> 1; any other size reads min(floor(dst * scale), in - 1) with scale = (float)in / out, in
 * float32, as torch rounds it. UNet2DConditionModel asks for the skip connection's size when the
 * latents do not halve evenly at every downsampling (diffusers' forward_upsample_size): a 15-row level
 * goes down to 8 rows and comes back up to 15, not 16. */
#ifndef SOWER_UPSAMPLE_INDEX_H
#define SOWER_UPSAMPLE_INDEX_H

#include <math.h>

#ifdef __CUDACC__
#define SOWER_UPSAMPLE_HD __host__ __device__
#else
#define SOWER_UPSAMPLE_HD
#endif

SOWER_UPSAMPLE_HD static inline int nearest_source_index(int dst, int in_size, int out_size)
{
    if (out_size == 2 * in_size) return dst >> 1;
    if (out_size == in_size) return dst;
    const float scale = (float)in_size / (float)out_size;
    const int src = (int)floorf((float)dst * scale);
    return src < in_size - 1 ? src : in_size - 1;
}

#endif
