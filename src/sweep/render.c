/* render.c: the render pass, rank 0 writing and the others sending (render.h). */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mapped_file.h"
#include "mpi_check.h"
#include "row_message.h"
#include "stop.h"
#include "threads_follow.h"

int render_rows(Run *r, uint64_t row0, uint64_t n, float *latents, unsigned char *digests, unsigned char *images,
                unsigned char *image_digests)
{
    if (r->faults.fail_rank == r->team.rank)
        return SOWER_FAIL(SOWER_EIO, "injected failure (SOWER_FAULT_FAIL_RANK=%ld) while rendering row %llu",
                          r->faults.fail_rank, (unsigned long long)row0);
    uint64_t *seeds = calloc(n + 1, sizeof *seeds);   /* (n,) */
    uint64_t *prompt = calloc(n + 1, sizeof *prompt); /* (n,) each row's prompt (prompted jobs) */
    RowText *texts = calloc(n + 1, sizeof *texts);    /* (n,) */
    if (!seeds || !prompt || !texts) {
        free(seeds), free(prompt), free(texts);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < n; i++)
        seeds[i] = job_seed_at(&r->job, row0 + i), prompt[i] = job_prompt_at(&r->job, row0 + i);
    double t0 = MPI_Wtime();
    int status = r->job.n_prompts ? prompt_table_rows(&r->text, prompt, (int)n, texts) : SOWER_OK;
    if (status == SOWER_OK) /* n <= the batch, at most 1024 */
        status = render_seeds_text(&r->rs, seeds, r->job.n_prompts ? texts : NULL, (int)n, latents);
    free(seeds), free(prompt), free(texts);
    SOWER_TRY(status);
    /* Weights changed in place during the batch would give rows the recorded digest does not describe. */
    SOWER_TRY(mapped_file_check_unchanged());
    for (uint64_t i = 0; i < n; i++) {
        float *row = latents + r->per * i; /* (C, H, W) */
        if (r->faults.fault_rank == r->team.rank && row0 + i == r->faults.fault_row) {
            uint32_t bits;
            memcpy(&bits, row, sizeof bits);
            bits ^= 1u;
            memcpy(row, &bits, sizeof bits);
        }
        SOWER_TRY(digest_buffer(row, r->per * sizeof(float), digests + DIGEST_BYTES * i));
        if (images && r->rs.should_stop && r->rs.should_stop()) /* a decode takes seconds: stop between them */
            return SOWER_FAIL(SOWER_ESTOPPED, "stopped by a signal while decoding row %llu", (unsigned long long)(row0 + i));
        if (images)
            SOWER_TRY(row_images_decode(&r->images, &r->backend, row, r->rs.height, r->rs.width,
                                        images + r->images.bytes * i, image_digests + DIGEST_BYTES * i));
    }
    const double took = MPI_Wtime() - t0;
    r->t_render += took;
    if (took > r->slowest_batch_s) r->slowest_batch_s = took;
    return SOWER_OK;
}

/* "45 s", "12m05s", "3h07m". */
static void format_duration(double seconds, char *out, size_t size)
{
    const long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s < 60)
        snprintf(out, size, "%ld s", s);
    else if (s < 3600)
        snprintf(out, size, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, size, "%ldh%02ldm", s / 3600, s % 3600 / 60);
}

/* Rank 0's progress line, at most one every progress_seconds, and the last (all rows) once: rows
 * of the run in the output, percent, the denoising step of the batch in hand (a batch of a big
 * model takes minutes) or the wait for the other ranks, the rate, elapsed time and ETA. On a
 * terminal one live line, ended with a newline; in a log (Slurm's), one line each. */
static void progress_report(Run *r)
{
    Progress *p = &r->progress;
    const double now = MPI_Wtime();
    const uint64_t total = r->plan.hi - r->plan.lo;
    const int all = p->written >= total, tty = isatty(2);
    if (p->ended || (now - p->last < r->progress_seconds && !all)) return;
    p->last = now, p->ended = all;
    /* The batch in hand counts by its steps: the first batch of a slow model already gives an ETA. */
    const double in_flight = p->steps && !all ? (double)p->in_hand * p->step / p->steps : 0;
    const double elapsed = now - p->start, fresh = (double)(p->written - r->n_done) + in_flight;
    const double left = (double)(total - p->written) - in_flight, rate = elapsed > 0 ? fresh / elapsed : 0;
    char doing[96] = "", spent[32], eta[32] = "unknown";
    if (p->waiting && !all)
        snprintf(doing, sizeof doing, r->team.world > 1 ? ", waiting for the other ranks' rows" : ", writing rows");
    else if (p->steps && !all && p->steps == r->job.steps)
        snprintf(doing, sizeof doing, ", step %d/%d of a batch of %llu", p->step, p->steps,
                 (unsigned long long)p->in_hand);
    else if (p->steps && !all) /* Heun, KDPM2, PNDM: the UNet calls of `steps` steps are more */
        snprintf(doing, sizeof doing, ", UNet call %d/%d (%d steps) of a batch of %llu", p->step, p->steps, r->job.steps,
                 (unsigned long long)p->in_hand);
    format_duration(elapsed, spent, sizeof spent);
    if (rate > 0) format_duration(left > 0 ? left / rate : 0, eta, sizeof eta);
    fprintf(stderr, "%s[sower] %llu/%llu rows (%.1f%%)%s, %.2f rows/s, elapsed %s, ETA %s%s", tty ? "\r\033[K" : "",
            (unsigned long long)p->written, (unsigned long long)total, total ? 100.0 * p->written / total : 100.0,
            doing, rate, spent, eta, !tty || all ? "\n" : "");
}

/* Between denoising steps: the thread count follows the load on the rank's CPUs (threads_follow.h). */
static void fit_threads_to_load(Run *r)
{
    if (!r->load.threads) return; /* not watching: pipeline.threads, Slurm's count, or a GPU rank */
    char who[48];
    snprintf(who, sizeof who, "sower run: [rank %d]", r->team.rank);
    threads_follow_load(&r->load, who);
}

/* RenderSettings.on_step on rank 0: the step of the batch in hand. */
static void progress_on_step(void *ctx, int done, int steps)
{
    Run *r = ctx;
    r->progress.step = done, r->progress.steps = steps;
    progress_report(r);
    fit_threads_to_load(r);
}

/* RenderSettings.on_step on the other ranks. */
static void load_on_step(void *ctx, int done, int steps)
{
    (void)done, (void)steps;
    fit_threads_to_load(ctx);
}

/* Rank 0 sends rank k its one TAG_STOP unless it has had it (told (world,)). */
static int tell_stop(uint8_t *told, int k)
{
    if (told[k]) return SOWER_OK;
    told[k] = 1;
    SOWER_MPI(MPI_Send(NULL, 0, MPI_BYTE, k, TAG_STOP, MPI_COMM_WORLD));
    return SOWER_OK;
}

/* sig: the signal rank 0 received; else `rank` stopped early (it received one). */
static void announce_stop(int sig, int rank)
{
    fprintf(stderr,
            "%ssower run: %s %d: stopping at the next denoising step, the batch in hand dropped (the rows written "
            "stay in OUT.partial for --resume)\n",
            isatty(2) ? "\n" : "", sig ? "signal" : "stopped early on rank", sig ? sig : rank);
}

/* How long rank 0 waits on a rank that sends nothing before it ends the job: SOWER_SILENCE_SECONDS,
 * else 10 minutes or 20 of its own slowest batches, whichever is longer (a batch of a big model on
 * a CPU can take minutes; a rank stopped, hung or cut off would otherwise be waited on forever). */
static double silence_limit(const Run *r)
{
    if (r->silence_seconds > 0) return r->silence_seconds;
    return 20 * r->slowest_batch_s > 600 ? 20 * r->slowest_batch_s : 600;
}

/* Rank 0, its own part over: waits for the next row message, naming a rank silent for too long.
 * last_heard (world,): when each rank last sent; ended (world,): ranks whose part is over. */
static int wait_for_rows(Run *r, const double *last_heard, const uint8_t *ended, MPI_Status *st)
{
    for (long nap_us = 100;; nap_us = nap_us < 50000 ? nap_us * 2 : 50000) {
        progress_report(r); /* a long wait is a line every few seconds too, not silence */
        int pending = 0;
        SOWER_MPI(MPI_Iprobe(MPI_ANY_SOURCE, TAG_ROWS, MPI_COMM_WORLD, &pending, st));
        if (pending) return SOWER_OK;
        const double now = MPI_Wtime(), limit = silence_limit(r);
        for (int k = 1; k < r->team.world; k++)
            if (!ended[k] && now - last_heard[k] > limit)
                return SOWER_FAIL(SOWER_EMPI,
                                  "rank %d has sent nothing for %.0f s (limit %.0f s: SOWER_SILENCE_SECONDS, "
                                  "else 10 min or 20 of rank 0's slowest batches): stopped, hung, or its node "
                                  "lost; ending the job (the rows written are kept: --resume)",
                                  k, now - last_heard[k], limit);
        const struct timespec nap = {0, nap_us * 1000};
        nanosleep(&nap, NULL);
    }
}

/* Rank 0: takes the messages that have arrived (all of them, waiting, once its own part is over:
 * !own_open) and writes their rows. *open_ranks counts ranks that have not ended their part;
 * *stopping becomes 1 when one ended early, and then this returns at once so the caller tells the
 * others. */
static int take_messages(Run *r, H5Out *out, RowMessage *in, uint8_t *told, double *last_heard, uint8_t *ended,
                         int own_open, int *open_ranks, int *stopping)
{
    r->progress.waiting = !own_open;
    while (*open_ranks > 0) {
        MPI_Status st;
        int pending = 1, sender = -1;
        double t0 = MPI_Wtime();
        if (own_open)
            SOWER_MPI(MPI_Iprobe(MPI_ANY_SOURCE, TAG_ROWS, MPI_COMM_WORLD, &pending, &st));
        else
            SOWER_TRY(wait_for_rows(r, last_heard, ended, &st));
        r->t_wait += MPI_Wtime() - t0;
        if (!pending) return SOWER_OK;
        t0 = MPI_Wtime();
        SOWER_TRY(row_message_recv(in, st.MPI_SOURCE, TAG_ROWS, &sender));
        r->t_wait += MPI_Wtime() - t0;
        last_heard[sender] = MPI_Wtime();
        const RowHeader *h = in->head;
        if (h->n == 0) { /* the sender's end */
            ended[sender] = 1;
            (*open_ranks)--;
            SOWER_TRY(tell_stop(told, sender));
            if (h->stopped && !*stopping) {
                announce_stop(0, sender);
                *stopping = 1;
                return SOWER_OK; /* back to the top: tell the others */
            }
            continue;
        }
        t0 = MPI_Wtime();
        SOWER_TRY(h5out_write_rows(out, h->row0 - r->plan.lo, h->n, in->latents, in->digests, in->images,
                                   in->image_digests));
        r->t_write += MPI_Wtime() - t0;
        r->progress.written += h->n;
        progress_report(r);
    }
    return SOWER_OK;
}

int render_and_write(Run *r, H5Out *out, double start, int *stopped)
{
    uint64_t lo, hi;
    plan_rank_rows(&r->plan, r->team.rank, &lo, &hi);
    const uint64_t total = r->plan.hi - r->plan.lo, max_b = (uint64_t)r->job.batch;
    RowMessage own = {0}, in = {0};                   /* own batches; what the other ranks send */
    uint8_t *told = calloc((size_t)r->team.world, 1); /* (world,) rank k has had its TAG_STOP */
    uint8_t *ended = calloc((size_t)r->team.world, 1); /* (world,) rank k's part is over */
    double *last_heard = malloc(sizeof *last_heard * (size_t)r->team.world); /* (world,) MPI_Wtime */
    int status = SOWER_OK, stopping = 0, own_open = 1, open_ranks = r->team.world - 1;
    r->progress = (Progress){.start = start, .last = start, .written = r->n_done};
    r->rs.on_step = progress_on_step, r->rs.on_step_ctx = r;
    if (!told || !ended || !last_heard) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < r->team.world; k++)
        last_heard[k] = start;
    SOWER_TRY_GOTO(row_message_init(&own, r->per, r->images.bytes, max_b), status, done);
    SOWER_TRY_GOTO(row_message_init(&in, r->per, r->images.bytes, max_b), status, done);
    load_watch_restart(&r->load); /* what came before was loading, not rendering */
    uint64_t next = lo, row0 = 0;
    while (own_open || open_ranks > 0) {
        if (!stopping && stop_requested()) {
            announce_stop(stop_requested(), 0);
            stopping = 1;
        }
        if (stopping) {
            own_open = 0;
            for (int k = 1; k < r->team.world; k++)
                SOWER_TRY_GOTO(tell_stop(told, k), status, done);
        }
        uint64_t n = own_open ? plan_next_batch(&r->plan, r->done, &next, hi, max_b, &row0) : 0;
        if (n) {
            row_message_begin(&own, row0, n);
            r->progress.in_hand = n;
            status = render_rows(r, row0, n, own.latents, own.digests, own.images, own.image_digests);
            r->progress.in_hand = 0, r->progress.steps = 0;
            if (status == SOWER_ESTOPPED) { /* a signal mid-batch: those rows are rendered again later */
                sower_error_clear();
                status = SOWER_OK;
                continue;
            }
            SOWER_TRY_GOTO(status, status, done);
            double t0 = MPI_Wtime();
            SOWER_TRY_GOTO(h5out_write_rows(out, row0 - r->plan.lo, n, own.latents, own.digests, own.images,
                                            own.image_digests), status,
                           done);
            r->t_write += MPI_Wtime() - t0;
            r->progress.written += n;
        } else {
            own_open = 0;
        }
        /* Take what has arrived; once our own part is over, wait for it. */
        SOWER_TRY_GOTO(
            take_messages(r, out, &in, told, last_heard, ended, own_open, &open_ranks, &stopping), status, done);
        progress_report(r);
    }
    *stopped = r->progress.written < total;
    r->rows_kept = r->progress.written;
done:
    r->rs.on_step = NULL; /* verification renders report nothing */
    row_message_free(&own), row_message_free(&in);
    free(told), free(ended), free(last_heard);
    return status;
}

int render_and_send(Run *r)
{
    uint64_t lo, hi;
    plan_rank_rows(&r->plan, r->team.rank, &lo, &hi);
    RowMessage msg;
    SOWER_TRY(row_message_init(&msg, r->per, r->images.bytes, (uint64_t)r->job.batch));
    r->rs.on_step = load_on_step, r->rs.on_step_ctx = r;
    load_watch_restart(&r->load); /* what came before was loading, not rendering */
    int status = SOWER_OK, told = 0, stopped = 0;
    uint64_t pos = lo, row0 = 0, n;
    for (;;) {
        int stop_msg = 0;
        SOWER_MPI_GOTO(MPI_Iprobe(0, TAG_STOP, MPI_COMM_WORLD, &stop_msg, MPI_STATUS_IGNORE), status, done);
        if (stop_msg) {
            SOWER_MPI_GOTO(MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                           status, done);
            told = 1;
        }
        if (told || stop_requested()) {
            stopped = 1;
            break;
        }
        if ((n = plan_next_batch(&r->plan, r->done, &pos, hi, (uint64_t)r->job.batch, &row0)) == 0) break;
        row_message_begin(&msg, row0, n);
        status = render_rows(r, row0, n, msg.latents, msg.digests, msg.images, msg.image_digests);
        if (status == SOWER_ESTOPPED) { /* a signal mid-batch: those rows are rendered again later */
            sower_error_clear();
            status = SOWER_OK;
            stopped = 1;
            break;
        }
        SOWER_TRY_GOTO(status, status, done);
        SOWER_TRY_GOTO(row_message_send(&msg, 0, TAG_ROWS), status, done);
    }
    row_message_end(&msg, stopped);
    SOWER_TRY_GOTO(row_message_send(&msg, 0, TAG_ROWS), status, done);
    if (!told)
        SOWER_MPI_GOTO(MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, MPI_COMM_WORLD, MPI_STATUS_IGNORE), status,
                       done);
done:
    r->rs.on_step = NULL; /* verification renders follow no load */
    row_message_free(&msg);
    return status;
}
