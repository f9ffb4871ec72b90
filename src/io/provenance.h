/* provenance.h: the root attributes of an output file that the job and the model determine. `sower
 * run` records them; `sower verify` recomputes them from the manifest stored in the file and the
 * model on disk, and compares (README "Output file"). The others either name this program
 * (sower_version, source_revision), the backend (backend_identity, determinism, checked on their
 * own), or the slice; run facts live in /run. */
#ifndef SOWER_PROVENANCE_H
#define SOWER_PROVENANCE_H

#include "digest.h"
#include "h5_layout.h"
#include "manifest.h"
#include "model.h"

/* The values of the format and format_version attributes (h5_layout.h owns them; these names
 * remain for the writer's attribute table). */
#define PROVENANCE_FORMAT LAYOUT_FORMAT_NAME
#define PROVENANCE_FORMAT_VERSION LAYOUT_FORMAT_VERSION

/* The first line of a job key. */
#define PROVENANCE_JOB_KEY_FORMAT "sower-job-key 1"

typedef struct {
    char manifest_sha256[DIGEST_HEX_CHARS]; /* of the manifest's bytes, comments and all */
    char weights_sha256[DIGEST_HEX_CHARS];
    char pipeline[256];           /* "scheduler=ddim steps=50 eta=0": the job key's line */
    char pipeline_json[320];      /* the same as JSON, the `pipeline` attribute: {"scheduler": "ddim", ...} */
    const char *generator;        /* "torch-cpu" */
    const char *model_config;     /* the model's config.json text (borrowed from the Model) */
    const char *scheduler_config; /* its scheduler_config.json text (borrowed) */
    /* The job key: what decides the bits of the rows, one "name: value" line each (rows and seeds,
     * pipeline, generator, backend and precision, the model's two configs, the output's layout),
     * and not what cannot change a bit (comments, name, threads, batch, verify, slurm). Two runs
     * with equal keys, weights and backend identity write the same rows, so one may resume the
     * other's. */
    char job_key[1536];
    char job_sha256[DIGEST_HEX_CHARS]; /* of job_key */
} Provenance;

/* The attributes of job rendered with model. */
int provenance_of(const Job *job, const Model *model, Provenance *p) SOWER_MUST_CHECK;

/* A file's identity without its model: job_sha256 must be the digest of job_key, and job_key must be the
 * key of the stored manifest (job) with the model digests it records (rows, seeds, pipeline settings,
 * prompts: everything the manifest decides); SOWER_EINPUT naming `what` otherwise, or when either is
 * missing. What `sower export` keys a folder on and labels rows from. */
int provenance_check_key(const Job *job, const char *job_key, const char *job_sha256, const char *what) SOWER_MUST_CHECK;

/* The 64 hex digits that follow `field` ("\ntext_side_sha256: ", "vae_sha256=") in a job key, into hex
 * (DIGEST_HEX_CHARS); 0 (hex "") when the key has no such field. */
int provenance_key_digest(const char *job_key, const char *field, char *hex);

#endif /* SOWER_PROVENANCE_H */
