/* ldm_names.h: the tensor names of a single-file Stable Diffusion 1.x/2.x checkpoint (the original
 * LDM/CompVis layout that AUTOMATIC1111 and ComfyUI load: model.diffusion_model.*,
 * first_stage_model.*, cond_stage_model.*) in diffusers' and transformers' names, as diffusers'
 * single-file loader (loaders/single_file_utils.py) maps them. Only names and views change: no
 * value is recomputed, so the tensors keep their bits. */
#ifndef SOWER_LDM_NAMES_H
#define SOWER_LDM_NAMES_H

#include <stddef.h>

typedef enum { LDM_UNET, LDM_VAE, LDM_TEXT, LDM_PARTS } LdmPart;

/* What the mapping needs from the pipeline's configs. */
typedef struct {
    int unet_layers_per_block; /* unet/config.json layers_per_block: LDM numbers blocks flat */
    int vae_up_blocks;         /* len(vae/config.json up_block_types): LDM numbers them in reverse */
    int text_layers;           /* text_encoder/config.json num_hidden_layers: deeper resblocks are unused
                                * (SD 2.x checkpoints hold 24; its pipeline uses 23) */
} LdmLayout;

typedef enum {
    LDM_WHOLE,   /* the tensor as it is */
    LDM_SQUEEZE, /* a 1x1 convolution's (C, C, 1, 1) weight as the linear (C, C) */
    LDM_THIRD_Q, /* rows [0, n/3) of OpenCLIP's fused in_proj: q */
    LDM_THIRD_K, /* rows [n/3, 2n/3): k */
    LDM_THIRD_V  /* rows [2n/3, n): v */
} LdmView;

typedef struct {
    LdmPart part;
    char name[192]; /* its diffusers/transformers name within that part's file */
    LdmView view;
} LdmTarget;

typedef enum {
    LDM_MAPPED,  /* *n targets (1, or 3 for a fused in_proj) */
    LDM_IGNORED, /* a tensor the pipeline does not use (EMA copies, the training schedule's buffers,
                  * OpenCLIP's text_projection and logit_scale, position_ids, resblocks past text_layers) */
    LDM_UNKNOWN  /* a name of none of these: another architecture (SDXL, an inpainting or ControlNet part) */
} LdmResult;

/* Maps one checkpoint tensor name; targets holds room for 3. `family` gets "SD 1.x" (CLIP text
 * encoder) or "SD 2.x" (OpenCLIP) when the name says which, else is left. */
LdmResult ldm_map_name(const LdmLayout *layout, const char *name, LdmTarget *targets, int *n, const char **family);

#endif /* SOWER_LDM_NAMES_H */
