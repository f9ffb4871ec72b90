/* cross_verify.c: rows re-rendered on another rank and compared bit for bit (cross_verify.h). */
#include "cross_verify.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_check.h"
#include "render.h"
#include "row_message.h"

/* Renders one row again into msg, with fault injection off: the point is to catch a fault of the
 * first render. Stop signals are not polled here: verification is short and every row is already
 * written (a run killed now resumes with nothing left to render but the verification). */
static int rerender(Run *r, uint64_t row, RowMessage *msg)
{
    const Faults faults = r->faults;
    int (*should_stop)(void) = r->rs.should_stop;
    r->faults.fault_rank = -1;
    r->rs.should_stop = NULL;
    row_message_begin(msg, row, 1);
    int status = render_rows(r, row, 1, msg->latents, msg->digests, msg->images, msg->image_digests);
    r->faults = faults;
    r->rs.should_stop = should_stop;
    return status;
}

/* The outcome of the pass, one entry per verification row: the /verify datasets. */
typedef struct {
    uint64_t *rows, *seeds;       /* (v,) */
    int32_t *renderer, *verifier; /* (v,) */
    uint8_t *match;               /* (v,) */
    float *max_abs_diff;          /* (v,) */
    float *stored;                /* (C, H, W): the row as the file holds it */
} Outcome;

static void outcome_free(Outcome *o)
{
    free(o->rows), free(o->seeds), free(o->renderer), free(o->verifier), free(o->match),
        free(o->max_abs_diff);
    free(o->stored);
    memset(o, 0, sizeof *o);
}

static int outcome_init(Outcome *o, uint64_t v, size_t per)
{
    memset(o, 0, sizeof *o);
    o->rows = calloc(v + 1, sizeof *o->rows), o->seeds = calloc(v + 1, sizeof *o->seeds);
    o->renderer = calloc(v + 1, sizeof *o->renderer), o->verifier = calloc(v + 1, sizeof *o->verifier);
    o->match = calloc(v + 1, 1), o->max_abs_diff = calloc(v + 1, sizeof *o->max_abs_diff);
    o->stored = malloc(sizeof(float) * per);
    if (!o->rows || !o->seeds || !o->renderer || !o->verifier || !o->match || !o->max_abs_diff ||
        !o->stored) {
        outcome_free(o);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %llu verification rows", (unsigned long long)v);
    }
    return SOWER_OK;
}

/* Rank 0: compares verification row k, re-rendered by rank `who` (msg), with the file's copy. */
static int compare(Run *r, H5Out *out, uint64_t k, int who, const RowMessage *msg, Outcome *o,
                   int *mismatches)
{
    const uint64_t row = msg->head->row0;
    SOWER_TRY(h5out_read_row(out, row - r->plan.lo, o->stored));
    unsigned char stored_digest[DIGEST_BYTES];
    SOWER_TRY(digest_buffer(o->stored, sizeof(float) * r->per, stored_digest));
    const float *fresh = msg->latents; /* (C, H, W) */
    double worst = 0;
    for (size_t i = 0; i < r->per; i++)
        worst = fmax(worst, fabs((double)fresh[i] - o->stored[i]));
    o->rows[k] = row, o->seeds[k] = job_seed_at(&r->job, row);
    o->renderer[k] = plan_renderer(&r->plan, row), o->verifier[k] = who;
    unsigned char stored_image_digest[DIGEST_BYTES]; /* pipeline.decode: the image must be the same bits too */
    if (msg->images) SOWER_TRY(h5out_read_image_digest(out, row - r->plan.lo, stored_image_digest));
    o->match[k] = memcmp(stored_digest, msg->digests, DIGEST_BYTES) == 0 &&
                  memcmp(o->stored, fresh, sizeof(float) * r->per) == 0 &&
                  (!msg->images || memcmp(stored_image_digest, msg->image_digests, DIGEST_BYTES) == 0);
    o->max_abs_diff[k] = (float)worst;
    if (!o->match[k]) {
        (*mismatches)++;
        char what[96]; /* the latents can agree where the decoded image does not (the VAE differs) */
        if (worst > 0 || memcmp(o->stored, fresh, sizeof(float) * r->per) != 0)
            snprintf(what, sizeof what, "latents' max abs diff %g", worst);
        else
            snprintf(what, sizeof what, "the latents are the same bits, the decoded image differs");
        fprintf(stderr, "sower: verify: row %llu (seed %llu) rendered by rank %d differs from rank %d's re-render (%s)\n",
                (unsigned long long)row, (unsigned long long)o->seeds[k], o->renderer[k], who, what);
    }
    return SOWER_OK;
}

/* Rank 0: collects every verification in row order, compares, writes /verify. */
static int collect(Run *r, H5Out *out, RowMessage *msg, int *mismatches)
{
    const uint64_t v = r->plan.verify_n;
    Outcome o;
    SOWER_TRY(outcome_init(&o, v, r->per));
    int status = SOWER_OK;
    for (uint64_t k = 0; k < v && status == SOWER_OK; k++) {
        const uint64_t row = plan_verify_row(&r->plan, k);
        const int who = plan_verifier(&r->plan, k);
        int sender = who;
        status = who == 0 ? rerender(r, row, msg) : row_message_recv(msg, who, TAG_VERIFY, &sender);
        if (status == SOWER_OK && (msg->head->n != 1 || msg->head->row0 != row))
            status =
                SOWER_FAIL(SOWER_EINTERNAL, "verify: rank %d sent row %llu (%llu rows), expected row %llu",
                           sender, (unsigned long long)msg->head->row0, (unsigned long long)msg->head->n,
                           (unsigned long long)row);
        if (status == SOWER_OK) status = compare(r, out, k, who, msg, &o, mismatches);
    }
    if (status == SOWER_OK)
        status = h5out_write_verify(out, v, o.rows, o.seeds, o.renderer, o.verifier, o.match, o.max_abs_diff);
    outcome_free(&o);
    SOWER_TRY(status);
    return SOWER_OK;
}

int cross_verify(Run *r, H5Out *out, int *mismatches)
{
    RowMessage msg; /* one row: [header, digest, (C, H, W)] */
    SOWER_TRY(row_message_init(&msg, r->per, r->images.bytes, 1));
    int status = SOWER_OK;
    *mismatches = 0;
    if (r->team.rank == 0) {
        status = collect(r, out, &msg, mismatches);
    } else {
        for (uint64_t k = 0; k < r->plan.verify_n && status == SOWER_OK; k++) {
            if (plan_verifier(&r->plan, k) != r->team.rank) continue;
            status = rerender(r, plan_verify_row(&r->plan, k), &msg);
            if (status == SOWER_OK) status = row_message_send(&msg, 0, TAG_VERIFY);
        }
    }
    row_message_free(&msg);
    SOWER_TRY(status);
    return SOWER_OK;
}
