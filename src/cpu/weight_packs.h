/* weight_packs.h: packed copies of weight matrices kept between calls, so that a layer's weights are
 * transformed and packed for the microkernel once per backend rather than once per forward pass.
 *
 * Repacking dominated small batches: at batch 1 the cifar UNet spent 18% of a forward in Winograd's
 * filter transform and 6% in packing the direct convolutions' weights (perf, AMD EPYC). A pack is a
 * pure function of the weights, the kernel family and the layer's shape, so a kept one has the bits
 * a fresh one would: nothing about a sample's result depends on whether it was kept.
 *
 * Keys are the weight pointer with the pack's kind, shape and family. Only weights the owner declared
 * (weight_packs_allow: the CPU backend's model's tensors, which stay put and unchanged while it lives)
 * are kept: any other pointer (a test's weights, freed and its address reused) is packed afresh every
 * call. Memory is bounded: SOWER_WEIGHT_CACHE_MB (default WEIGHT_PACKS_DEFAULT_MB, 0 to keep none)
 * per backend; past it, layers pack into scratch as before. */
#ifndef SOWER_WEIGHT_PACKS_H
#define SOWER_WEIGHT_PACKS_H

#include <stddef.h>

#include "err.h"

enum { WEIGHT_PACKS_DEFAULT_MB = 256 }; /* the cifar UNet's packs take about 200 MiB */

typedef enum { PACK_WINOGRAD_U = 1, PACK_CONV_A = 2 } WeightPackKind;

typedef struct {
    const float *weight;  /* the raw weights the pack was made from */
    const void *family;   /* the GemmPacking it was packed for */
    int kind, rows, cols; /* WeightPackKind; (Cout, Cin) or (Cout, Cin k k) */
    float *data;          /* 64-byte aligned */
    void *alloc;
    size_t bytes;         /* alloc's size */
} WeightPack;

typedef struct {
    WeightPack *items;
    int count, cap;
    size_t bytes;
    const float **allowed; /* (n_allowed,) sorted: the weights whose packs may be kept */
    int n_allowed;
} WeightPacks;

/* Declares the weights whose packs may be kept (n pointers, NULLs skipped; copied). */
int weight_packs_allow(WeightPacks *w, const float *const *weights, int n) SOWER_MUST_CHECK;

/* The budget from SOWER_WEIGHT_CACHE_MB (whole MiB, 0 to keep none), checked once; a malformed
 * value is a usage error naming the variable. */
int weight_packs_budget(size_t *bytes) SOWER_MUST_CHECK;

/* Where one call's pack of these weights goes: kept (a pack from an earlier call, to read), or fresh
 * (a new kept pack, to fill now), or neither (pack into scratch, as when nothing is kept). */
typedef struct {
    const float *kept;
    float *fresh;
} PackSlot;
PackSlot weight_pack_slot(WeightPacks *w, const float *weight, const void *family, int kind, int rows, int cols,
                          size_t floats);
/* Forgets a fresh pack the call could not fill (its scratch failed), so no later call reads it. */
void weight_pack_abandon(WeightPacks *w, float *fresh);

void weight_packs_free(WeightPacks *w);

#endif /* SOWER_WEIGHT_PACKS_H */
