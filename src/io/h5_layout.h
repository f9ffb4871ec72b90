/* h5_layout.h: every name of sower's output file (README.md "Output file", DESIGN.md "Output file
 * (HDF5)"): datasets, groups and attributes, spelled once. Writers and readers use these names only;
 * renaming one changes the format (and needs a new LAYOUT_FORMAT_VERSION). Paths are relative to
 * the file's root group, as HDF5 names objects in it. */
#ifndef SOWER_H5_LAYOUT_H
#define SOWER_H5_LAYOUT_H

/* The root attributes `format` and `format_version`: what this sower writes and reads. */
#define LAYOUT_FORMAT_NAME "sower-latents"
#define LAYOUT_FORMAT_VERSION "1"

/* Row datasets, N rows (a job's, or a slice's): latents float32 (N, C, H, W), seeds uint64 (N,),
 * digest uint8 (N, 32), done uint8 (N,). */
#define LAYOUT_LATENTS "latents"
#define LAYOUT_SEEDS "seeds"
#define LAYOUT_DIGEST "digest"
#define LAYOUT_DONE "done"
/* pipeline.decode: images uint8 (N, 3, H, W), diffusers' postprocess of vae.decode, and their
 * image_digest uint8 (N, 32); dimensions (sample, image_channel, image_y, image_x). */
#define LAYOUT_IMAGES "images"
#define LAYOUT_IMAGE_DIGEST "image_digest"
#define LAYOUT_DIM_IMAGE_CHANNEL "image_channel"
#define LAYOUT_DIM_IMAGE_Y "image_y"
#define LAYOUT_DIM_IMAGE_X "image_x"
/* Stable Diffusion outputs (a job with prompts): prompts and negative_prompts, variable-length UTF-8
 * (P,) in the manifest's order ("" where no negative prompt was given), and prompt_index uint32 (N,):
 * row i's prompt. Dimensions: prompt (P), and sample for prompt_index. */
#define LAYOUT_PROMPTS "prompts"
#define LAYOUT_NEGATIVE_PROMPTS "negative_prompts"
#define LAYOUT_PROMPT_INDEX "prompt_index"
#define LAYOUT_DIM_PROMPT "prompt"
#define LAYOUT_PROMPTS_MEANING "meaning"
/* Dimension scales (netCDF-style dimensions without values) naming the datasets' dimensions:
 * latents (sample, channel, y, x), seeds (sample), digest (sample, digest_byte), done (sample). */
#define LAYOUT_DIM_SAMPLE "sample"
#define LAYOUT_DIM_CHANNEL "channel"
#define LAYOUT_DIM_Y "y"
#define LAYOUT_DIM_X "x"
#define LAYOUT_DIM_DIGEST_BYTE "digest_byte"
/* Attributes of /latents: what it holds, and its coordinate variable (CF `coordinates`: seeds). */
#define LAYOUT_LATENTS_MEANING "meaning"
#define LAYOUT_LATENTS_COORDINATES "coordinates"
#define LAYOUT_SEEDS_MEANING "meaning"
/* Attributes of /digest and /done saying what they hold. */
#define LAYOUT_DIGEST_ALGORITHM "algorithm"
#define LAYOUT_DONE_MEANING "meaning"

/* Root attributes (strings). The provenance ones (provenance.h) are determined by the job and the
 * model; slice and slice_rows are written to slice files only (`sower run --slice K/N`). */
#define LAYOUT_ATTR_FORMAT "format"
#define LAYOUT_ATTR_FORMAT_VERSION "format_version"
#define LAYOUT_ATTR_SOWER_VERSION "sower_version"
#define LAYOUT_ATTR_SOURCE_REVISION "source_revision"
#define LAYOUT_ATTR_MANIFEST "manifest"
#define LAYOUT_ATTR_MANIFEST_SHA256 "manifest_sha256"
#define LAYOUT_ATTR_JOB_KEY "job_key"       /* provenance.h: what decides the rows' bits; resume compares */
#define LAYOUT_ATTR_JOB_SHA256 "job_sha256" /* its digest */
#define LAYOUT_ATTR_MODEL_CONFIG "model_config"
#define LAYOUT_ATTR_WEIGHTS_SHA256 "weights_sha256"
#define LAYOUT_ATTR_SCHEDULER_CONFIG "scheduler_config"
#define LAYOUT_ATTR_PIPELINE "pipeline"
#define LAYOUT_ATTR_GENERATOR "generator"
#define LAYOUT_ATTR_BACKEND_IDENTITY "backend_identity"
#define LAYOUT_ATTR_DETERMINISM "determinism"
#define LAYOUT_ATTR_SLICE "slice"
#define LAYOUT_ATTR_SLICE_ROWS "slice_rows"

/* /run: facts that differ between runs (string attributes, and the rank_slices dataset, uint64
 * (world + 1,): rank k rendered rows [rank_slices[k], rank_slices[k + 1])). */
#define LAYOUT_RUN "run"
#define LAYOUT_RUN_HOSTS "hosts"
#define LAYOUT_RUN_WORLD_SIZE "world_size"
#define LAYOUT_RUN_BATCH "batch"
#define LAYOUT_RUN_TIMINGS "timings"
#define LAYOUT_RUN_MODEL_PATH "model_path"
#define LAYOUT_RUN_STITCHED_FROM "stitched_from"
#define LAYOUT_RUN_RANK_SLICES "rank_slices"

/* /verify: the run's own verification, one entry per re-rendered row (all of length V): rows and
 * seeds uint64, renderer_rank and verifier_rank int32 (-1: rendered by an array task), match uint8,
 * max_abs_diff float32. */
#define LAYOUT_VERIFY "verify"
#define LAYOUT_VERIFY_ROWS "rows"
#define LAYOUT_VERIFY_SEEDS "seeds"
#define LAYOUT_VERIFY_RENDERER "renderer_rank"
#define LAYOUT_VERIFY_VERIFIER "verifier_rank"
#define LAYOUT_VERIFY_MATCH "match"
#define LAYOUT_VERIFY_MAX_ABS_DIFF "max_abs_diff"
/* Every finished output has /verify (empty when verify.count is 0): one without it is damaged. */
#define LAYOUT_VERIFY_MISSING "the record of its run's verification (every finished output has one, empty when " \
                              "verify.count is 0): a damaged file"

#endif /* SOWER_H5_LAYOUT_H */
