/* clip_text_model.c: see clip_text_model.h (upstream: transformers/models/clip/modeling_clip.py,
 * CLIPTextTransformer with eager attention). */
#define _POSIX_C_SOURCE 200809L
#include "clip_text_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_file.h"
#include "regular_file.h"
#include "gemm.h"
#include "json_keys.h"
#include "rowops.h"

enum { CONFIG_MAX_BYTES = 1 << 20, MAX_HIDDEN = 16384, MAX_VOCAB = 1 << 20 };

/* ---- config ---- */

static int check_architectures(const cJSON *obj, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "architectures");
    if (!v || cJSON_IsNull(v))
        return SOWER_OK;
    const cJSON *first = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 ? cJSON_GetArrayItem(v, 0) : NULL;
    if (first && cJSON_IsString(first) && strcmp(first->valuestring, "CLIPTextModel") == 0)
        return SOWER_OK;
    char *found = cJSON_PrintUnformatted(v);
    int status = SOWER_FAIL(SOWER_EMODEL,
                            "%s: key 'architectures': found %s, sower's text encoder is [\"CLIPTextModel\"] (SD 1.x "
                            "and 2.x; SDXL's CLIPTextModelWithProjection is not supported)",
                            path, found ? found : "?");
    cJSON_free(found);
    return status;
}

int clip_text_config_parse(const char *json_text, size_t len, const char *path, ClipTextConfig *cfg)
{
    /* transformers 4.46 CLIPTextConfig.__init__ defaults */
    *cfg = (ClipTextConfig){.vocab_size = 49408, .hidden_size = 512, .intermediate_size = 2048, .num_layers = 12,
                            .num_heads = 8, .max_positions = 77, .layer_norm_eps = 1e-5f, .act = CLIP_ACT_QUICK_GELU};
    cJSON *obj;
    SOWER_TRY(json_parse_config(json_text, len, path, SOWER_EMODEL, &obj));
    static const char *const model_types[] = {"clip_text_model", NULL};
    static const char *const acts[] = {"quick_gelu", "gelu", NULL};
    int status = SOWER_OK;
    SOWER_TRY_GOTO(check_architectures(obj, path), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "model_type", model_types, 0), status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "vocab_size", 1, MAX_VOCAB, &cfg->vocab_size, 0, NULL), status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "hidden_size", 1, MAX_HIDDEN, &cfg->hidden_size, 0, NULL), status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "intermediate_size", 1, 8 * MAX_HIDDEN, &cfg->intermediate_size, 0, NULL),
                   status, done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "num_hidden_layers", 1, CLIP_MAX_LAYERS, &cfg->num_layers, 0, NULL), status,
                   done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "num_attention_heads", 1, MAX_HIDDEN, &cfg->num_heads, 0, NULL), status,
                   done);
    SOWER_TRY_GOTO(json_key_int(obj, path, "max_position_embeddings", 1, CLIP_MAX_POSITIONS, &cfg->max_positions, 0,
                                NULL),
                   status, done);
    SOWER_TRY_GOTO(json_key_float(obj, path, "layer_norm_eps", 0.0, 1.0, &cfg->layer_norm_eps), status, done);
    SOWER_TRY_GOTO(json_key_one_of(obj, path, "hidden_act", acts, 0), status, done);
    SOWER_TRY_GOTO(json_key_bool(obj, path, "use_attention_mask", &cfg->use_attention_mask), status, done);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(obj, "hidden_act");
    if (act && strcmp(act->valuestring, "gelu") == 0)
        cfg->act = CLIP_ACT_GELU;
    if (cfg->hidden_size % cfg->num_heads != 0)
        status = SOWER_FAIL(SOWER_EMODEL, "%s: key 'hidden_size': %d is not a multiple of num_attention_heads %d", path,
                            cfg->hidden_size, cfg->num_heads);
done:
    cJSON_Delete(obj);
    return status;
}

/* ---- parameters, transformers' names ---- */

static int add_layer_norm(WeightList *w, LayerNormParams *ln, int dim, float eps, const char *prefix)
{
    ln->channels = dim, ln->eps = eps;
    return weight_list_add_norm(w, &ln->gamma, &ln->beta, dim, prefix);
}

static int list_params(ClipTextModel *m)
{
    const ClipTextConfig *c = &m->cfg;
    WeightList *w = &m->weights;
    int64_t tok[2] = {c->vocab_size, c->hidden_size}, pos[2] = {c->max_positions, c->hidden_size};
    SOWER_TRY(weight_list_add(w, &m->token_embedding, 2, tok, "text_model.embeddings.token_embedding.weight"));
    SOWER_TRY(weight_list_add(w, &m->position_embedding, 2, pos, "text_model.embeddings.position_embedding.weight"));
    char p[128];
    for (int i = 0; i < c->num_layers; i++) {
        ClipLayer *l = &m->layers[i];
        const int d = c->hidden_size;
#define LAYER(suffix) (snprintf(p, sizeof p, "text_model.encoder.layers.%d.%s", i, suffix), p)
        SOWER_TRY(weight_list_add_linear(w, &l->q, d, d, LAYER("self_attn.q_proj")));
        SOWER_TRY(weight_list_add_linear(w, &l->k, d, d, LAYER("self_attn.k_proj")));
        SOWER_TRY(weight_list_add_linear(w, &l->v, d, d, LAYER("self_attn.v_proj")));
        SOWER_TRY(weight_list_add_linear(w, &l->out, d, d, LAYER("self_attn.out_proj")));
        SOWER_TRY(add_layer_norm(w, &l->ln1, d, c->layer_norm_eps, LAYER("layer_norm1")));
        SOWER_TRY(weight_list_add_linear(w, &l->fc1, c->intermediate_size, d, LAYER("mlp.fc1")));
        SOWER_TRY(weight_list_add_linear(w, &l->fc2, d, c->intermediate_size, LAYER("mlp.fc2")));
        SOWER_TRY(add_layer_norm(w, &l->ln2, d, c->layer_norm_eps, LAYER("layer_norm2")));
#undef LAYER
    }
    SOWER_TRY(add_layer_norm(w, &m->final_ln, c->hidden_size, c->layer_norm_eps, "text_model.final_layer_norm"));
    return SOWER_OK;
}

/* ---- loading ---- */

static int find_files(ClipTextModel *m, const char *dir)
{
    const char *const folders[] = {"/text_encoder", ""};
    for (int i = 0; i < 2; i++) {
        char config[4096], weights[4096];
        if ((size_t)snprintf(config, sizeof config, "%s%s/config.json", dir, folders[i]) >= sizeof config ||
            (size_t)snprintf(weights, sizeof weights, "%s%s/model.safetensors", dir, folders[i]) >= sizeof weights)
            return SOWER_FAIL(SOWER_EMODEL, "'%s': path too long", dir);
        if (!path_present(config))
            continue;
        if (!path_present(weights)) {
            char bin[4096];
            snprintf(bin, sizeof bin, "%s%s/pytorch_model.bin", dir, folders[i]);
            return SOWER_FAIL(SOWER_EMODEL, "%s: missing%s", weights,
                              regular_file_exists(bin) ? " (pytorch_model.bin is there, but sower reads only safetensors: "
                                             "pickle files run code when loaded)"
                                           : "");
        }
        memcpy(m->config_path, config, sizeof config);
        memcpy(m->weights_path, weights, sizeof weights);
        return SOWER_OK;
    }
    return SOWER_FAIL(SOWER_EMODEL, "'%s': no text encoder (expected text_encoder/config.json and "
                                    "text_encoder/model.safetensors, as StableDiffusionPipeline.save_pretrained writes them)",
                      dir);
}

static int load_files(ClipTextModel *m, const char *dir)
{
    SOWER_TRY(find_files(m, dir));
    char *text = NULL;
    size_t bytes = 0;
    SOWER_TRY(config_file_read(m->config_path, "text encoder config", CONFIG_MAX_BYTES, SOWER_EMODEL, &text, &bytes));
    int status = clip_text_config_parse(text, bytes, m->config_path, &m->cfg);
    if (status == SOWER_OK)
        status = digest_buffer(text, bytes, m->config_sha256);
    free(text);
    SOWER_TRY(status);
    SOWER_TRY(list_params(m));
    SOWER_TRY(safetensors_open(&m->file, m->weights_path));
    /* Old checkpoints (SD 1.5) carry the int64 position_ids buffer; transformers ignores it. */
    static const char *const ignored[] = {"text_model.embeddings.position_ids", NULL};
    const WeightBindRules rules = {.model = "CLIPTextModel", .ignored = ignored};
    SOWER_TRY(weight_list_bind(&m->weights, &m->file, &rules));
    SOWER_TRY(safetensors_check_finite(&m->file));
    SOWER_TRY(safetensors_digest(&m->file, m->weights_sha256));
    safetensors_release_pages(&m->file);
    return SOWER_OK;
}

int clip_text_model_load(ClipTextModel *m, const char *dir)
{
    memset(m, 0, sizeof *m);
    const int status = load_files(m, dir);
    if (status != SOWER_OK)
        clip_text_model_free(m); /* a failed load holds nothing */
    return status;
}

void clip_text_model_free(ClipTextModel *m)
{
    weight_list_free(&m->weights);
    safetensors_close(&m->file);
    memset(m, 0, sizeof *m);
}

/* ---- forward ---- */

/* y (n, p->out) = x (n, p->in) . weight^T + bias. */
static void linear_rows(const LinearParams *p, const float *x, int n, float *y)
{
    gemm_f32_bt(n, p->out, p->in, x, p->in, p->weight, p->in, y, p->out, 0);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < p->out; j++)
            y[(size_t)i * p->out + j] += p->bias[j];
}

static void layer_norm_rows(const LayerNormParams *ln, const float *x, int n, float *y)
{
    const size_t dim = (size_t)ln->channels;
    for (int i = 0; i < n; i++)
        row_layer_norm(y + i * dim, x + i * dim, dim, ln->gamma, ln->beta, ln->eps);
}

typedef struct {
    float *h;      /* (n, hidden): the residual stream */
    float *x;      /* (n, hidden): a layer norm's output, then the heads' concatenated outputs */
    float *q, *k, *v; /* (n, hidden) each */
    float *scores; /* (n, n): one head's attention weights */
    float *mlp;    /* (n, intermediate) */
} Scratch;

/* h += out_proj(softmax(q k^T + causal) v), q already scaled; per head, token i attends to 0..i, and
 * never to padding (tokens n_attended..n-1): a pad attends to every real token. */
static void attention(const ClipLayer *l, const ClipTextConfig *c, int n, int n_attended, Scratch *s)
{
    const int d = c->hidden_size, heads = c->num_heads, hd = d / heads;
    const float scale = 1.0f / sqrtf((float)hd);
    linear_rows(&l->q, s->x, n, s->q);
    linear_rows(&l->k, s->x, n, s->k);
    linear_rows(&l->v, s->x, n, s->v);
    for (size_t i = 0; i < (size_t)n * d; i++)
        s->q[i] *= scale;
    for (int h = 0; h < heads; h++) {
        gemm_f32_bt(n, n, hd, s->q + h * hd, d, s->k + h * hd, d, s->scores, n, 0);
        for (int i = 0; i < n; i++) {
            float *row = s->scores + (size_t)i * n;
            const int keys = i < n_attended ? i + 1 : n_attended;
            row_softmax_scaled(row, (size_t)keys, 1.0f);
            memset(row + keys, 0, (size_t)(n - keys) * sizeof *row); /* exp(finfo.min - max) == 0 in torch */
        }
        gemm_f32(n, hd, n, s->scores, n, s->v + h * hd, d, s->x + h * hd, d, 0);
    }
    linear_rows(&l->out, s->x, n, s->q); /* q is free again */
    for (size_t i = 0; i < (size_t)n * d; i++)
        s->h[i] += s->q[i];
}

static void feed_forward(const ClipLayer *l, const ClipTextConfig *c, int n, Scratch *s)
{
    const size_t d = (size_t)c->hidden_size;
    linear_rows(&l->fc1, s->x, n, s->mlp);
    if (c->act == CLIP_ACT_GELU)
        row_gelu_erf(s->mlp, (size_t)n * c->intermediate_size);
    else
        row_quick_gelu(s->mlp, (size_t)n * c->intermediate_size);
    linear_rows(&l->fc2, s->mlp, n, s->q);
    for (size_t i = 0; i < n * d; i++)
        s->h[i] += s->q[i];
}

int clip_text_encode(const ClipTextModel *m, const int32_t *ids, int n_tokens, int n_attended, int clip_skip,
                     float *out)
{
    const ClipTextConfig *c = &m->cfg;
    if (n_tokens < 1 || n_tokens > c->max_positions)
        return SOWER_FAIL(SOWER_EINPUT, "%d tokens: the text encoder takes 1..%d", n_tokens, c->max_positions);
    if (n_attended < 1 || n_attended > n_tokens)
        return SOWER_FAIL(SOWER_EINPUT, "%d of %d tokens attended: expected 1..%d", n_attended, n_tokens, n_tokens);
    if (clip_skip < 0 || clip_skip > c->num_layers)
        return SOWER_FAIL(SOWER_EINPUT, "clip_skip %d: this text encoder has %d layers (0..%d)", clip_skip,
                          c->num_layers, c->num_layers);
    for (int i = 0; i < n_tokens; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return SOWER_FAIL(SOWER_EINPUT,
                              "token %d is id %d, outside the text encoder's vocabulary of %d (the tokenizer's "
                              "vocab.json and the text encoder's config.json vocab_size disagree)",
                              i, (int)ids[i], c->vocab_size);
    /* Prompts are encoded before the UNet's backend is made (sower sample, sower run): BLIS aborts the process
     * when its first product cannot make its packing buffers, so they are made first, or "out of memory". */
    SOWER_TRY(gemm_reserve_packing());
    const size_t n = (size_t)n_tokens, d = (size_t)c->hidden_size;
    Scratch s = {0};
    float *block = malloc((5 * n * d + n * n + n * (size_t)c->intermediate_size) * sizeof(float));
    if (!block)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the text encoder's activations (%d tokens)", n_tokens);
    s.h = block, s.x = s.h + n * d, s.q = s.x + n * d, s.k = s.q + n * d, s.v = s.k + n * d;
    s.scores = s.v + n * d, s.mlp = s.scores + n * n;

    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            s.h[i * d + j] = m->token_embedding[(size_t)ids[i] * d + j] + m->position_embedding[i * d + j];
    for (int layer = 0; layer < c->num_layers - clip_skip; layer++) {
        const ClipLayer *l = &m->layers[layer];
        layer_norm_rows(&l->ln1, s.h, n_tokens, s.x);
        attention(l, c, n_tokens, n_attended, &s);
        layer_norm_rows(&l->ln2, s.h, n_tokens, s.x);
        feed_forward(l, c, n_tokens, &s);
    }
    layer_norm_rows(&m->final_ln, s.h, n_tokens, out);
    free(block);
    return SOWER_OK;
}
