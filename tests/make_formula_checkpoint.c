/* make_formula_checkpoint.c: writes a UNet2DModel checkpoint whose weights follow the formula of
 * validate/make_diffusers_reference.py, with sower's bit-exact torch generator, so that models too
 * large to commit (the ddpm-cifar10-32 architecture, 143 MB) are regenerated at test time with
 * exactly the weights the diffusers references were computed with.
 *
 * usage: make_formula_checkpoint CONFIG.json OUT.safetensors [--legacy-names]
 * Per parameter NAME (diffusers' current name) of shape S:
 *   seed = first 8 bytes of sha256(NAME), little-endian;  r = torch.randn(S, generator(seed))
 *   conv/linear weight (ndim >= 2): r * 2^-round_half_even(0.5*log2(fan_in))
 *   bias: r * 2^-4;  norm weight: 1 + r * 2^-3
 * Prints the SHA-256 of all weights concatenated in sorted-name order (the reference's check). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "outfile.h"
#include "rng.h"
#include "unet.h"

typedef struct {
    const WeightParam *param;
    char file_name[128];
    float *values; /* (numel,) */
    int64_t numel;
} Entry;

static int by_param_name(const void *a, const void *b)
{
    return strcmp(((const Entry *)a)->param->name, ((const Entry *)b)->param->name);
}

static int by_file_name(const void *a, const void *b)
{
    return strcmp(((const Entry *)a)->file_name, ((const Entry *)b)->file_name);
}

static void legacy(const char *name, char *out, size_t size)
{
    static const char *const from[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const to[] = {".query.", ".key.", ".value.", ".proj_attn."};
    snprintf(out, size, "%s", name);
    for (int i = 0; i < 4; i++) {
        const char *hit = strstr(name, from[i]);
        if (hit)
            snprintf(out, size, "%.*s%s%s", (int)(hit - name), name, to[i], hit + strlen(from[i]));
    }
}

static void fill(Entry *e)
{
    const WeightParam *p = e->param;
    unsigned char sha[DIGEST_BYTES];
    if (digest_buffer(p->name, strlen(p->name), sha) != SOWER_OK)
        exit(3);
    uint64_t seed = 0;
    for (int i = 0; i < 8; i++)
        seed |= (uint64_t)sha[i] << (8 * i);
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, e->values, (size_t)e->numel);
    size_t len = strlen(p->name);
    if (p->ndim >= 2) {
        double fan_in = (double)(e->numel / p->shape[0]);
        int exponent = (int)nearbyint(0.5 * log2(fan_in)); /* round half to even, as Python's round */
        float scale = ldexpf(1.0f, -exponent);
        for (int64_t i = 0; i < e->numel; i++)
            e->values[i] *= scale;
    } else if (len > 5 && strcmp(p->name + len - 5, ".bias") == 0) {
        for (int64_t i = 0; i < e->numel; i++)
            e->values[i] *= 0.0625f;
    } else {
        for (int64_t i = 0; i < e->numel; i++)
            e->values[i] = 1.0f + e->values[i] * 0.125f;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: make_formula_checkpoint CONFIG.json OUT.safetensors [--legacy-names]\n");
        return 2;
    }
    int use_legacy = argc > 3 && strcmp(argv[3], "--legacy-names") == 0;
    unsigned char *text = NULL;
    size_t bytes = 0;
    UNetConfig cfg;
    UNet u;
    if (file_read_all(argv[1], 1 << 20, &text, &bytes) != SOWER_OK ||
        unet_config_parse((const char *)text, bytes, argv[1], &cfg) != SOWER_OK || unet_init(&u, &cfg) != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 2;
    }
    free(text);
    Entry *entries = calloc((size_t)u.weights.n_params, sizeof *entries);
    for (int i = 0; i < u.weights.n_params; i++) {
        Entry *e = &entries[i];
        e->param = &u.weights.params[i];
        e->numel = 1;
        for (int d = 0; d < e->param->ndim; d++)
            e->numel *= e->param->shape[d];
        e->values = malloc((size_t)e->numel * sizeof(float));
        if (use_legacy)
            legacy(e->param->name, e->file_name, sizeof e->file_name);
        else
            snprintf(e->file_name, sizeof e->file_name, "%s", e->param->name);
        fill(e);
    }
    /* The reference's check: all weights in sorted current-name order. */
    qsort(entries, (size_t)u.weights.n_params, sizeof *entries, by_param_name);
    Digest d = {0};
    unsigned char sha[DIGEST_BYTES];
    char hex[DIGEST_HEX_CHARS];
    if (digest_init(&d) != SOWER_OK)
        return 3;
    for (int i = 0; i < u.weights.n_params; i++)
        if (digest_update(&d, entries[i].values, (size_t)entries[i].numel * sizeof(float)) != SOWER_OK)
            return 3;
    if (digest_final(&d, sha) != SOWER_OK)
        return 3;
    digest_hex(sha, hex);

    /* safetensors: header (JSON, space-padded to 8 bytes), then the tensors in file-name order. */
    qsort(entries, (size_t)u.weights.n_params, sizeof *entries, by_file_name);
    size_t cap = 256 + (size_t)u.weights.n_params * 256, used = 0;
    char *header = malloc(cap);
    used += (size_t)snprintf(header + used, cap - used, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (int i = 0; i < u.weights.n_params; i++) {
        const Entry *e = &entries[i];
        used += (size_t)snprintf(header + used, cap - used, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", e->file_name);
        for (int k = 0; k < e->param->ndim; k++)
            used += (size_t)snprintf(header + used, cap - used, "%s%lld", k ? "," : "", (long long)e->param->shape[k]);
        uint64_t end = offset + (uint64_t)e->numel * 4;
        used += (size_t)snprintf(header + used, cap - used, "],\"data_offsets\":[%llu,%llu]}",
                                 (unsigned long long)offset, (unsigned long long)end);
        offset = end;
    }
    used += (size_t)snprintf(header + used, cap - used, "}");
    while (used % 8)
        header[used++] = ' ';
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)used >> (8 * i));
    OutFile f;
    int status = outfile_open(&f, argv[2]);
    if (status == SOWER_OK)
        status = outfile_write(&f, len_le, 8);
    if (status == SOWER_OK)
        status = outfile_write(&f, header, used);
    for (int i = 0; i < u.weights.n_params && status == SOWER_OK; i++)
        status = outfile_write(&f, entries[i].values, (size_t)entries[i].numel * sizeof(float));
    if (status == SOWER_OK)
        status = outfile_commit(&f);
    outfile_free(&f);
    if (status != SOWER_OK) {
        sower_error_print(stderr, 1);
        return 3;
    }
    printf("%s\n", hex);
    for (int i = 0; i < u.weights.n_params; i++)
        free(entries[i].values);
    free(entries);
    free(header);
    unet_free(&u);
    return 0;
}
