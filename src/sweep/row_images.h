/* row_images.h: pipeline.decode, a row's image beside its latents. Every rank that renders or
 * re-renders rows decodes them with the pipeline's VAE (vae.h, one image at a time, on the CPU
 * backend) and post-processes them as diffusers does (vae_pixel_byte): the bytes of /images, with
 * their SHA-256 in /image_digest. The bits are the latents' function on one backend identity, so
 * they are batch-, thread- and rank-invariant as the latents are. */
#ifndef SOWER_ROW_IMAGES_H
#define SOWER_ROW_IMAGES_H

#include <stddef.h>

#include "backend.h"
#include "err.h"
#include "manifest.h"
#include "model.h"
#include "vae.h"

typedef struct {
    Vae vae;
    int c, h, w;        /* an image's shape: (out_channels, latent h * scale, latent w * scale) */
    size_t bytes;       /* c * h * w: a row's image bytes */
    float *decoded;     /* (c, h, w) the VAE's output for the row in hand */
} RowImages;

/* Loads the VAE of model_dir for latents of (latent_c, latent_h, latent_w); sets m->vae_sha256
 * (the job key names it). SOWER_EMODEL naming the file when it does not fit. */
int row_images_load(RowImages *ri, Model *m, const char *model_dir, int latent_c, int latent_h,
                    int latent_w) SOWER_MUST_CHECK;
/* One row: latent (latent_c, latent_h, latent_w) -> image (c, h, w) bytes and its digest (DIGEST_BYTES). */
int row_images_decode(RowImages *ri, const ComputeBackend *be, const float *latent, int latent_h, int latent_w,
                      unsigned char *image, unsigned char *digest) SOWER_MUST_CHECK;
void row_images_free(RowImages *ri); /* safe on a zeroed one */

#endif /* SOWER_ROW_IMAGES_H */
