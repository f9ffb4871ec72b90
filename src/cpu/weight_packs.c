/* weight_packs.c: see weight_packs.h. */
#include "weight_packs.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int weight_packs_budget(size_t *bytes)
{
    static int read;
    static size_t budget;
    if (!read) {
        const char *v = getenv("SOWER_WEIGHT_CACHE_MB");
        unsigned long long mb = WEIGHT_PACKS_DEFAULT_MB;
        if (v && *v) {
            char *end = NULL;
            errno = 0;
            mb = strtoull(v, &end, 10);
            if (errno || *end || *v == '-' || mb > (SIZE_MAX >> 20))
                return SOWER_FAIL(SOWER_EUSAGE, "SOWER_WEIGHT_CACHE_MB=%s: expected a whole number of MiB (0: keep none)",
                                  v);
        }
        budget = (size_t)mb << 20;
        read = 1;
    }
    *bytes = budget;
    return SOWER_OK;
}

static int by_address(const void *a, const void *b)
{
    const uintptr_t x = (uintptr_t)*(const float *const *)a, y = (uintptr_t)*(const float *const *)b;
    return x < y ? -1 : x > y;
}

int weight_packs_allow(WeightPacks *w, const float *const *weights, int n)
{
    free(w->allowed);
    w->allowed = malloc((size_t)(n > 0 ? n : 1) * sizeof *w->allowed);
    w->n_allowed = 0;
    if (!w->allowed)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %d weight pointers", n);
    for (int i = 0; i < n; i++)
        if (weights[i])
            w->allowed[w->n_allowed++] = weights[i];
    qsort(w->allowed, (size_t)w->n_allowed, sizeof *w->allowed, by_address);
    return SOWER_OK;
}

static int allowed(const WeightPacks *w, const float *weight)
{
    return w->n_allowed > 0 && bsearch(&weight, w->allowed, (size_t)w->n_allowed, sizeof *w->allowed, by_address);
}

/* The pack kept for these weights, or NULL (always for weights not allowed). */
static const float *weight_pack_find(const WeightPacks *w, const float *weight, const void *family, int kind,
                                     int rows, int cols)
{
    if (!allowed(w, weight))
        return NULL;
    for (int i = 0; i < w->count; i++) {
        const WeightPack *p = &w->items[i];
        if (p->weight == weight && p->family == family && p->kind == kind && p->rows == rows && p->cols == cols)
            return p->data;
    }
    return NULL;
}

/* A new pack of `floats` floats for these weights, kept until weight_packs_free, its contents the caller's
 * to write; NULL (and no error) for weights not allowed, past the budget or when memory is short. */
static float *weight_pack_add(WeightPacks *w, const float *weight, const void *family, int kind, int rows, int cols,
                              size_t floats)
{
    size_t budget = 0;
    if (!allowed(w, weight))
        return NULL;
    if (weight_packs_budget(&budget) != SOWER_OK) { /* reported where the program starts; keep none */
        sower_error_clear();
        return NULL;
    }
    const size_t bytes = floats * sizeof(float) + 64;
    if (bytes > budget || w->bytes > budget - bytes)
        return NULL;
    if (w->count == w->cap) {
        const int cap = w->cap ? 2 * w->cap : 64;
        WeightPack *items = realloc(w->items, (size_t)cap * sizeof *items);
        if (!items)
            return NULL;
        w->items = items, w->cap = cap;
    }
    void *alloc = malloc(bytes);
    if (!alloc)
        return NULL;
    WeightPack *p = &w->items[w->count++];
    *p = (WeightPack){weight, family, kind, rows, cols, (float *)(((uintptr_t)alloc + 63) & ~(uintptr_t)63), alloc,
                      bytes};
    w->bytes += bytes;
    return p->data;
}

PackSlot weight_pack_slot(WeightPacks *w, const float *weight, const void *family, int kind, int rows, int cols,
                          size_t floats)
{
    PackSlot s = {weight_pack_find(w, weight, family, kind, rows, cols), NULL};
    if (!s.kept)
        s.fresh = weight_pack_add(w, weight, family, kind, rows, cols, floats);
    return s;
}

void weight_pack_abandon(WeightPacks *w, float *fresh)
{
    if (fresh && w->count > 0 && w->items[w->count - 1].data == fresh) {
        WeightPack *p = &w->items[--w->count];
        w->bytes -= p->bytes;
        free(p->alloc);
    }
}

void weight_packs_free(WeightPacks *w)
{
    for (int i = 0; i < w->count; i++)
        free(w->items[i].alloc);
    free(w->items);
    free(w->allowed);
    memset(w, 0, sizeof *w);
}
