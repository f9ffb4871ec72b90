/* scratch.c: see scratch.h. */
#include "scratch.h"

#include <stdlib.h>
#include <string.h>

int scratch_reserve(Scratch *s, size_t floats)
{
    if (floats <= s->cap)
        return SOWER_OK;
    free(s->buf);
    s->buf = malloc(floats * sizeof(float));
    s->cap = s->buf ? floats : 0;
    if (!s->buf)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu floats of scratch", floats);
    return SOWER_OK;
}

void scratch_free(Scratch *s)
{
    free(s->buf);
    weight_packs_free(&s->packs);
    memset(s, 0, sizeof *s);
}
