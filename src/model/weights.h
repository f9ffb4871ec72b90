/* weights.h: a model's list of expected tensors, and binding it to a safetensors file.
 *
 * A model (the UNet, the CLIP text encoder, ...) lists every tensor it needs by its diffusers or
 * transformers state-dict name and shape, each with the slot (a field of the model's parameter
 * structs) its data pointer goes to. Binding checks the file against the list in both directions:
 * every listed tensor present with its shape and a float dtype, and no tensor the model does not
 * know, so a checkpoint of another architecture or config is refused by name, never half-used. */
#ifndef SOWER_WEIGHTS_H
#define SOWER_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "layers.h"
#include "safetensors.h"

enum { WEIGHT_MAX_DIMS = 4 };

/* One expected tensor: its state-dict name, shape, and the slot its data pointer goes to. */
typedef struct {
    char name[128];
    int ndim;
    int64_t shape[WEIGHT_MAX_DIMS];
    const float **slot;
} WeightParam;

typedef struct {
    WeightParam *params; /* (n_params,) in construction order */
    int n_params;
    int64_t n_values; /* total parameter count */
} WeightList;

int weight_list_add(WeightList *l, const float **slot, int ndim, const int64_t *shape, const char *fmt, ...)
    SOWER_PRINTF(5, 6) SOWER_MUST_CHECK;
/* PREFIX.weight (out, in) and PREFIX.bias (out,). */
int weight_list_add_linear(WeightList *l, LinearParams *p, int out, int in,
                           const char *prefix) SOWER_MUST_CHECK;
/* A norm's PREFIX.weight and PREFIX.bias, both (channels,). */
int weight_list_add_norm(WeightList *l, const float **gamma, const float **beta, int channels,
                         const char *prefix) SOWER_MUST_CHECK;
void weight_list_free(WeightList *l); /* safe on a zeroed list */

typedef struct {
    const char *model; /* what the list describes, for messages: "UNet2DModel", "CLIPTextModel" */
    /* Another name a listed tensor may carry in older checkpoints (writes "" if none); may be NULL. */
    void (*legacy_name)(const char *name, char *out, size_t size);
    /* Names the file may hold that the model does not use (buffers such as position_ids); NULL-ended,
     * or NULL. */
    const char *const *ignored;
    /* Whether the file may hold a tensor of this name unused (e.g. a VAE's encoder when decoding); may be
     * NULL. */
    int (*ignored_if)(const char *name);
} WeightBindRules;

/* Points every slot at its tensor's float32 data in weights (which must outlive the model).
 * SOWER_EMODEL naming the file and tensor: missing, wrong shape, not a float dtype, or unexpected. */
int weight_list_bind(const WeightList *l, const StFile *weights,
                     const WeightBindRules *rules) SOWER_MUST_CHECK;

/* "(2, 3)" / "(4,)": a shape for messages. */
void weight_shape_text(const int64_t *shape, int ndim, char *out, size_t size);

#endif /* SOWER_WEIGHTS_H */
