/* ldm_config.h: the diffusers configs of a single-file Stable Diffusion 1.x/2.x checkpoint, inferred from
 * its tensors (`sower convert CKPT --tokenizer DIR`, without a config folder).
 *
 * What the tensors show is read from them: the UNet's widths, levels, resnets per level, which levels
 * attend, the transformer depth, conv or linear projections, the context width, in/out channels; the
 * VAE's widths, levels, resnets, latent channels; the text encoder's vocabulary, width, depth, MLP width
 * and positions. What they cannot show is the family's, as the LDM configs (v1-inference.yaml,
 * v2-inference-v.yaml) and the hub's SD 1.5 / SD 2.1 folders that diffusers' from_single_file fetches
 * set it: 32 norm groups; SD 1.x 8 heads per UNet block, quick_gelu, PNDM (SD 1.5's scheduler config),
 * sample sizes 64 / 512; SD 2.x heads of 64 channels, linear projections, upcast_attention, erf gelu,
 * the penultimate text layer (a checkpoint's resblocks less one), SD 2.1's DDIM v-prediction scheduler,
 * sample sizes 96 / 768 (as diffusers infers "v2": a 512x512 epsilon base model needs its own configs);
 * text encoder heads of 64 channels. */
#ifndef SOWER_LDM_CONFIG_H
#define SOWER_LDM_CONFIG_H

#include "err.h"
#include "ldm_names.h"
#include "safetensors.h"

typedef struct {
    const char *family; /* "SD 1.x" or "SD 2.x" */
    LdmLayout layout;   /* for ldm_map_name */
    /* JSON texts of model_index.json, unet/config.json, vae/config.json, text_encoder/config.json,
     * scheduler/scheduler_config.json */
    char *model_index, *unet, *vae, *text_encoder, *scheduler;
} LdmConfigs;

/* The token ids the text encoder's config names (the tokenizer's). */
typedef struct {
    int bos, eos, pad;
} LdmTokenIds;

/* Infers every config from ckpt's tensor names and shapes; SOWER_EMODEL naming the tensor (or the one
 * missing) when the checkpoint is not an SD 1.x/2.x one these rules describe. */
int ldm_infer_configs(const StFile *ckpt, const LdmTokenIds *ids, LdmConfigs *out) SOWER_MUST_CHECK;
void ldm_configs_free(LdmConfigs *c);

#endif /* SOWER_LDM_CONFIG_H */
