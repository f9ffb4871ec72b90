/* export_images.h: `sower export OUT.h5|OUT.npy --pngs DIR | --imagefolder DIR | --webdataset DIR`: one PNG per
 * row, decoded by the model's VAE for Stable Diffusion latents, with its generation parameters in the PNG. */
#ifndef SOWER_EXPORT_IMAGES_H
#define SOWER_EXPORT_IMAGES_H

#include <stdint.h>

#include "err.h"
#include "export_source.h"

typedef enum {
    EXPORT_PNGS,        /* DIR/rowRRRRRRRR_seedS.png */
    EXPORT_IMAGEFOLDER, /* the same + DIR/metadata.jsonl (Hugging Face datasets' imagefolder layout) */
    EXPORT_WEBDATASET,  /* DIR/shard-NNNNNN.tar of KEY.png + KEY.json (WebDataset), shard_rows rows each */
    EXPORT_NPY,         /* DIR/shard-NNNNNN.npy (rows, C, h, w) float32 of the latents + shard-NNNNNN.jsonl */
} ExportLayout;

/* Rows [first, last] of `in` (a finished run output or a sample's array) into dir, streaming one row at a
 * time. Resumable: a PNG or shard already there (each is written whole, then renamed) is kept; dir must
 * be new, empty or hold an export of the same job (its sower-export.json says so). model_dir: the model whose
 * VAE decodes (NULL: the one the run recorded). */
int export_images(const ExportSource *in, const char *dir, ExportLayout layout, uint64_t first, uint64_t last,
                  uint64_t shard_rows, const char *model_dir) SOWER_MUST_CHECK;

#endif /* SOWER_EXPORT_IMAGES_H */
