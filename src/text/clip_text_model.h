/* clip_text_model.h: transformers' CLIPTextModel, the text encoder of Stable Diffusion 1.x and 2.x,
 * float32 on the host CPU (weights stored as F32, F16 or BF16; docs/reference/stable-diffusion.md
 * section 2).
 *
 *   h = token_embedding[ids] + position_embedding[0..n)
 *   each layer (pre-LN):  h += out_proj(causal_attention(LN1(h)))
 *                         h += fc2(act(fc1(LN2(h))))      act: quick_gelu (SD 1.x) or erf gelu (SD 2.x)
 *   last_hidden_state = final_layer_norm(h)
 * Attention scales q by head_dim^-0.5 after its bias (as transformers does) and lets token i see
 * tokens 0..i (the causal mask; SD passes no padding mask, so pad tokens are real tokens, unless the
 * config says use_attention_mask: then the pipeline passes the tokenizer's, and no token sees padding).
 *
 * It runs on the host for every backend: once per prompt (a few hundred ms for SD's 123M-parameter
 * encoder), small beside 2 x 50 UNet passes, and so a prompt's embeddings are the same bits whatever
 * backend renders the latents. Each prompt is encoded on its own, its matrix products through gemm.h,
 * so its bits never depend on the other prompts of the job, nor on the thread count. */
#ifndef SOWER_CLIP_TEXT_MODEL_H
#define SOWER_CLIP_TEXT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "layers.h"
#include "safetensors.h"
#include "weights.h"

enum { CLIP_MAX_LAYERS = 64, CLIP_MAX_POSITIONS = 4096 };

typedef enum { CLIP_ACT_QUICK_GELU, CLIP_ACT_GELU } ClipActivation;

/* text_encoder/config.json (CLIPTextConfig), with transformers 4.46's defaults. */
typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_layers, num_heads, max_positions;
    float layer_norm_eps;
    ClipActivation act;
    int use_attention_mask; /* config.json's: the pipeline passes the tokenizer's padding mask (pads attend to, and
                             * are attended by, no padding) */
} ClipTextConfig;

typedef struct {
    LayerNormParams ln1, ln2;
    LinearParams q, k, v, out; /* (hidden, hidden) */
    LinearParams fc1;          /* (intermediate, hidden) */
    LinearParams fc2;          /* (hidden, intermediate) */
} ClipLayer;

typedef struct {
    ClipTextConfig cfg;
    const float *token_embedding;    /* (vocab_size, hidden) */
    const float *position_embedding; /* (max_positions, hidden) */
    ClipLayer layers[CLIP_MAX_LAYERS];
    LayerNormParams final_ln;
    WeightList weights;              /* every tensor, transformers' names */
    StFile file;                     /* the mapped model.safetensors */
    char config_path[4096], weights_path[4096];
    unsigned char config_sha256[DIGEST_BYTES], weights_sha256[DIGEST_BYTES];
} ClipTextModel;

/* Parses a CLIPTextConfig config.json: architectures (if given) must be ["CLIPTextModel"], model_type
 * "clip_text_model", hidden_act "quick_gelu" or "gelu", hidden_size a multiple of
 * num_attention_heads. SOWER_EMODEL naming the file and key. */
int clip_text_config_parse(const char *json_text, size_t len, const char *path, ClipTextConfig *cfg) SOWER_MUST_CHECK;

/* Loads DIR/text_encoder/ of a pipeline folder, or DIR itself when it holds config.json and
 * model.safetensors: config, weights (checked against the config, tensor by tensor) and both digests.
 * SOWER_EMODEL naming the file and key or tensor. */
int clip_text_model_load(ClipTextModel *m, const char *dir) SOWER_MUST_CHECK;
void clip_text_model_free(ClipTextModel *m); /* safe on a zeroed model */

/* The embeddings of one token sequence: ids (n_tokens,), n_tokens <= max_positions, every id below
 * vocab_size -> out (n_tokens, hidden). Tokens n_attended..n_tokens-1 are padding that no token attends to
 * (transformers' attention_mask; n_attended == n_tokens: none). clip_skip 0 gives last_hidden_state (what SD uses);
 * clip_skip k in 1..num_layers gives final_layer_norm of the output of layer num_layers - k, as
 * diffusers' encode_prompt(clip_skip=k) computes it. */
int clip_text_encode(const ClipTextModel *m, const int32_t *ids, int n_tokens, int n_attended, int clip_skip,
                     float *out) SOWER_MUST_CHECK;

#endif /* SOWER_CLIP_TEXT_MODEL_H */
