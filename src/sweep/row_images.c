/* row_images.c: see row_images.h. */
#include "row_images.h"

#include <stdlib.h>
#include <string.h>

#include "digest.h"

int row_images_load(RowImages *ri, Model *m, const char *model_dir, int latent_c, int latent_h, int latent_w)
{
    memset(ri, 0, sizeof *ri);
    SOWER_TRY(vae_load(&ri->vae, model_dir));
    if (ri->vae.cfg.latent_channels != latent_c)
        return SOWER_FAIL(SOWER_EMODEL, "%s: latent_channels %d, but the UNet's samples have %d channels",
                          ri->vae.config_path, ri->vae.cfg.latent_channels, latent_c);
    ri->c = ri->vae.cfg.out_channels;
    ri->h = latent_h * ri->vae.cfg.scale_factor, ri->w = latent_w * ri->vae.cfg.scale_factor;
    ri->bytes = (size_t)ri->c * ri->h * ri->w;
    ri->decoded = malloc(sizeof(float) * ri->bytes);
    if (!ri->decoded) return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a %dx%d image", ri->h, ri->w);
    memcpy(m->vae_sha256, ri->vae.sha256, sizeof m->vae_sha256);
    m->vae_known = 1;
    return SOWER_OK;
}

int row_images_decode(RowImages *ri, const ComputeBackend *be, const float *latent, int latent_h, int latent_w,
                      unsigned char *image, unsigned char *digest)
{
    SOWER_TRY(vae_decode(be, &ri->vae, latent, 1, latent_h, latent_w, ri->decoded));
    for (size_t i = 0; i < ri->bytes; i++)
        image[i] = vae_pixel_byte(ri->decoded[i]);
    SOWER_TRY(digest_buffer(image, ri->bytes, digest));
    return SOWER_OK;
}

void row_images_free(RowImages *ri)
{
    vae_free(&ri->vae);
    free(ri->decoded);
    memset(ri, 0, sizeof *ri);
}
