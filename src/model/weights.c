/* weights.c: see weights.h. */
#include "weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int weight_list_add(WeightList *l, const float **slot, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (ndim < 0 || ndim > WEIGHT_MAX_DIMS)
        return SOWER_FAIL(SOWER_EINTERNAL, "a parameter of %d dimensions", ndim);
    if ((l->n_params & (l->n_params - 1)) == 0) { /* grow at powers of two */
        WeightParam *grown = realloc(l->params, (size_t)(l->n_params ? 2 * l->n_params : 64) * sizeof *grown);
        if (!grown) return SOWER_FAIL(SOWER_ENOMEM, "out of memory listing the model's parameters");
        l->params = grown;
    }
    WeightParam *p = &l->params[l->n_params++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        numel *= shape[i];
    }
    p->slot = slot;
    l->n_values += numel;
    return SOWER_OK;
}

int weight_list_add_linear(WeightList *l, LinearParams *p, int out, int in, const char *prefix)
{
    p->out = out, p->in = in;
    int64_t w[2] = {out, in}, b[1] = {out};
    SOWER_TRY(weight_list_add(l, &p->weight, 2, w, "%s.weight", prefix));
    SOWER_TRY(weight_list_add(l, &p->bias, 1, b, "%s.bias", prefix));
    return SOWER_OK;
}

int weight_list_add_norm(WeightList *l, const float **gamma, const float **beta, int channels,
                         const char *prefix)
{
    int64_t s[1] = {channels};
    SOWER_TRY(weight_list_add(l, gamma, 1, s, "%s.weight", prefix));
    SOWER_TRY(weight_list_add(l, beta, 1, s, "%s.bias", prefix));
    return SOWER_OK;
}

void weight_list_free(WeightList *l)
{
    free(l->params);
    memset(l, 0, sizeof *l);
}

void weight_shape_text(const int64_t *shape, int ndim, char *out, size_t size)
{
    size_t used = (size_t)snprintf(out, size, "(");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size) snprintf(out + used, size - used, "%s)", ndim == 1 ? "," : "");
}

static int is_ignored(const WeightBindRules *rules, const char *name)
{
    for (const char *const *n = rules->ignored; n && *n; n++)
        if (strcmp(*n, name) == 0) return 1;
    return rules->ignored_if && rules->ignored_if(name);
}

static const StTensor *find(const StFile *weights, const WeightBindRules *rules, const char *name)
{
    const StTensor *t = safetensors_find(weights, name);
    if (!t && rules->legacy_name) {
        char legacy[sizeof((WeightParam *)0)->name];
        rules->legacy_name(name, legacy, sizeof legacy);
        if (legacy[0]) t = safetensors_find(weights, legacy);
    }
    return t;
}

int weight_list_bind(const WeightList *l, const StFile *weights, const WeightBindRules *rules)
{
    int status = SOWER_OK;
    unsigned char *used = calloc((size_t)weights->n_tensors + 1, 1); /* (n_tensors,) 1 once bound */
    if (!used) return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    for (int i = 0; i < l->n_params; i++) {
        const WeightParam *p = &l->params[i];
        const StTensor *t = find(weights, rules, p->name);
        if (!t) {
            status = SOWER_FAIL(SOWER_EMODEL, "%s: missing tensor '%s' (this %s config needs %d tensors)",
                                weights->path, p->name, rules->model, l->n_params);
            goto done;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = t->shape[d] == p->shape[d];
        if (!same) {
            char found[96], expected[96];
            weight_shape_text(t->shape, t->ndim, found, sizeof found);
            weight_shape_text(p->shape, p->ndim, expected, sizeof expected);
            status = SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s' has shape %s, the config needs %s",
                                weights->path, t->name, found, expected);
            goto done;
        }
        if (t->file_dtype == ST_INTEGER) {
            status =
                SOWER_FAIL(SOWER_EMODEL, "%s: tensor '%s' is stored as %s, expected F32, F16 or BF16 weights",
                           weights->path, t->name, safetensors_dtype_name(t->file_dtype));
            goto done;
        }
        used[t - weights->tensors] = 1;
        *p->slot = t->data;
    }
    for (int i = 0; i < weights->n_tensors; i++)
        if (!used[i] && !is_ignored(rules, weights->tensors[i].name)) {
            status = SOWER_FAIL(SOWER_EMODEL,
                                "%s: unexpected tensor '%s' (not part of the %s its config describes)",
                                weights->path, weights->tensors[i].name, rules->model);
            goto done;
        }
done:
    free(used);
    return status;
}
