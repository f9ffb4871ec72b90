/* layers.c: the host-side pieces of layers.h. */
#include "layers.h"

#include <math.h>

void timestep_embedding(const float *timesteps, int batch, int dim, int flip_sin_to_cos, float freq_shift,
                           float *emb)
{
    const int half = dim / 2;
    const float neg_log_period = (float)(-log(10000.0)); /* python float * float32 tensor */
    for (int b = 0; b < batch; b++) {
        float *e = emb + (size_t)b * dim;
        const float t = timesteps[b];
        for (int i = 0; i < half; i++) {
            float exponent = (neg_log_period * (float)i) / ((float)half - freq_shift);
            float arg = t * expf(exponent);
            float s = sinf(arg), c = cosf(arg);
            e[flip_sin_to_cos ? half + i : i] = s;
            e[flip_sin_to_cos ? i : half + i] = c;
        }
        if (dim % 2)
            e[dim - 1] = 0.0f;
    }
}
