/* prompt_table.c: see prompt_table.h. */
#define _POSIX_C_SOURCE 200809L
#include "prompt_table.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_file.h"

int prompt_table_init(PromptTable *t, const char *dir, const char *const *prompts, const char *const *negatives,
                      size_t n, int clip_skip, int guided)
{
    memset(t, 0, sizeof *t);
    SOWER_TRY(prompt_encoder_load(&t->encoder, dir));
    int status = SOWER_OK;
    if (clip_skip > t->encoder.encoder.cfg.num_layers) {
        status = SOWER_FAIL(SOWER_EINPUT, "clip_skip %d: the text encoder has %d layers (%s)", clip_skip,
                            t->encoder.encoder.cfg.num_layers, t->encoder.encoder.config_path);
        goto fail;
    }
    t->prompts = prompts, t->negatives = negatives, t->n = n;
    t->clip_skip = clip_skip, t->guided = guided;
    t->per = (size_t)t->encoder.tokens * t->encoder.dim;
    t->cond = calloc(n + 1, sizeof *t->cond);
    t->uncond = calloc(n + 1, sizeof *t->uncond);
    if (!t->cond || !t->uncond) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for the table of %zu prompts", n);
        goto fail;
    }
    return SOWER_OK;
fail:
    prompt_table_free(t);
    return status;
}

void prompt_table_free(PromptTable *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->cond ? t->cond[i] : NULL);
        free(t->uncond ? t->uncond[i] : NULL);
    }
    free(t->cond), free(t->uncond);
    prompt_encoder_free(&t->encoder);
    memset(t, 0, sizeof *t);
}

/* *slot (tokens, dim) <- the embeddings of text, once. */
static int encode_once(PromptTable *t, float **slot, const char *text, int clip_skip, const char *which)
{
    if (*slot) return SOWER_OK;
    float *e = malloc(t->per * sizeof *e); /* (tokens, dim) */
    if (!e) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a prompt's embeddings");
    const double t0 = omp_get_wtime();
    const int status = prompt_encode(&t->encoder, text, clip_skip, e, stderr, which);
    t->seconds += omp_get_wtime() - t0;
    if (status != SOWER_OK) {
        free(e);
        return status;
    }
    *slot = e;
    return SOWER_OK;
}

int prompt_table_rows(PromptTable *t, const uint64_t *index, int count, RowText *out)
{
    for (int i = 0; i < count; i++) {
        const uint64_t p = index[i];
        if (p >= t->n)
            return SOWER_FAIL(SOWER_EINTERNAL, "prompt %llu of a table of %zu", (unsigned long long)p, t->n);
        char which[96]; /* the warning on a prompt that is too long names it, as /prompts indexes it */
        snprintf(which, sizeof which, "prompt %llu", (unsigned long long)p);
        SOWER_TRY(encode_once(t, &t->cond[p], t->prompts[p], t->clip_skip, which));
        snprintf(which, sizeof which, "the negative prompt of prompt %llu", (unsigned long long)p);
        if (t->guided) SOWER_TRY(encode_once(t, &t->uncond[p], t->negatives[p], 0, which));
        out[i] = (RowText){t->cond[p], t->guided ? t->uncond[p] : NULL};
    }
    return SOWER_OK;
}

int prompt_encoder_digest(const PromptEncoder *pe, unsigned char out[DIGEST_BYTES])
{
    /* Every file the tokenizer may read. The last is hashed only where it is there (a legacy folder's added
     * tokens), so the digests of folders without one are those earlier sowers recorded. */
    static const char *const files[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                        "special_tokens_map.json", "added_tokens.json"};
    enum { ONLY_WHERE_PRESENT = 4 };
    Digest d = {0};
    SOWER_TRY(digest_init(&d));
    int status = SOWER_OK;
    for (size_t k = 0; k < sizeof files / sizeof files[0] && status == SOWER_OK; k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", pe->tokenizer_dir, files[k]);
        char *text = NULL;
        size_t bytes = 0;
        unsigned char file_sha[DIGEST_BYTES] = {0}; /* zeros: the file is absent (optional ones) */
        struct stat st;
        const int present = stat(path, &st) == 0;
        if (present) { /* there: it must read (a FIFO or directory is refused by name) */
            status = config_file_read(path, "tokenizer file", 64 << 20, SOWER_EMODEL, &text, &bytes);
            if (status == SOWER_OK) status = digest_buffer(text, bytes, file_sha);
            free(text);
        }
        if (!present && k >= ONLY_WHERE_PRESENT) continue;
        if (status == SOWER_OK) status = digest_update(&d, files[k], strlen(files[k]) + 1);
        if (status == SOWER_OK) status = digest_update(&d, file_sha, sizeof file_sha);
    }
    if (status == SOWER_OK) status = digest_update(&d, pe->encoder.config_sha256, DIGEST_BYTES);
    if (status == SOWER_OK) status = digest_update(&d, pe->encoder.weights_sha256, DIGEST_BYTES);
    if (status == SOWER_OK) status = digest_final(&d, out);
    digest_free(&d);
    return status;
}
