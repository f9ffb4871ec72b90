/* scratch.h: one growing buffer the CPU operations reuse (packed panels or im2col columns, attention
 * scores), and the packed weights they keep between calls (weight_packs.h), owned by the CPU backend's
 * context; its own module so ops.c, conv.c and winograd.c all use it without depending on each other. */
#ifndef SOWER_SCRATCH_H
#define SOWER_SCRATCH_H

#include <stddef.h>

#include "err.h"
#include "weight_packs.h"

typedef struct {
    float *buf;
    size_t cap;         /* floats */
    WeightPacks packs;  /* kept packed weights, freed with the scratch */
} Scratch;
int scratch_reserve(Scratch *s, size_t floats) SOWER_MUST_CHECK;
void scratch_free(Scratch *s);

#endif /* SOWER_SCRATCH_H */
