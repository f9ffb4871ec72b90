/* run_state.h: what one rank knows of the run in progress; shared by the sweep's modules
 * (run.c sets it up, render.c, cross_verify.c and output.c use it). Not for other layers. */
#ifndef SOWER_RUN_STATE_H
#define SOWER_RUN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "collective.h"
#include "cpu_load.h"
#include "h5out.h"
#include "manifest.h"
#include "model.h"
#include "output_lock.h"
#include "pipeline.h"
#include "plan.h"
#include "prompt_table.h"
#include "row_images.h"
#include "scheduler.h"
#include "weight_share.h"

/* Message tags: TAG_ROWS and TAG_VERIFY carry a RowMessage to rank 0. Rank 0 sends each other
 * rank exactly one TAG_STOP (empty): "stop now" while the rank is still rendering, else the reply
 * to its end. */
enum { TAG_ROWS = 11, TAG_VERIFY = 12, TAG_STOP = 13 };

typedef struct {
    long fault_rank; /* SOWER_FAULT_INJECT=RANK:ROW flips one bit of that row on that rank; -1: off */
    uint64_t fault_row;
    long fail_rank; /* SOWER_FAULT_FAIL_RANK=RANK makes that rank fail while rendering; -1: off */
} Faults;

/* Rank 0's progress lines (render.c). */
typedef struct {
    double start, last; /* MPI_Wtime: the render pass's start; the last line */
    uint64_t written;   /* rows of this run in the output */
    uint64_t in_hand;   /* rows of rank 0's batch being denoised (0: none) */
    int step, steps;    /* of that batch: UNet calls done, of the scheduler's calls (= job steps but for Heun,
                         * KDPM2 and PNDM) */
    int waiting;        /* rank 0's own part is over: it waits for the other ranks' rows */
    int ended;          /* the last line (all rows) is out */
} Progress;

typedef struct {
    Team team; /* rank, world, and the first failure agreed on */
    Job job;
    Model model;
    Scheduler sched;
    WeightShare share;      /* how the weights reach this rank's device */
    ComputeBackend backend; /* runs the UNet: the manifest's pipeline.backend on this rank's device */
    RenderSettings rs;
    PromptTable text; /* Stable Diffusion: the job's prompts, encoded as rows need them */
    RowImages images; /* pipeline.decode: the VAE and a row's image size (images.bytes 0: no images) */
    size_t per;     /* floats per row: C*H*W */
    Plan plan;      /* the rows this run writes ([plan.lo, plan.hi)) and who renders them */
    char *out_path; /* the file this run writes (the job's output, or the slice's file) */
    OutputLock lock; /* rank 0: out_path's lock, held from before the output is looked at to the end */
    H5Out out;      /* rank 0: that file, open while the run writes it */
    uint8_t *done;  /* (plan.hi - plan.lo,) rows already in the output (resumed or stitched), skipped */
    uint64_t n_done;    /* rows done before this run rendered any */
    uint64_t rows_kept; /* rank 0: rows done in the file when rendering ended (all, unless stopped) */
    int finished_before;              /* --resume-auto found the output already finished: nothing to do */
    int finished_stitched;            /* ... the job's stitched output, while this run is a slice of it */
    uint64_t finished_mismatches;     /* rows its run's own verification found differing (rank 0): exit 1 */
    double t_render, t_write, t_wait; /* seconds: rendering (+ digests), HDF5 writes, waiting for rows */
    double t_render_pass;             /* t_render when the render pass ended (verification renders too) */
    Faults faults;
    double progress_seconds; /* between progress lines on stderr: SOWER_PROGRESS_SECONDS, default 2 */
    Progress progress;       /* rank 0, during the render pass */
    double silence_seconds;  /* SOWER_SILENCE_SECONDS: how long rank 0 waits on a silent rank; 0: automatic */
    double slowest_batch_s;  /* the longest render_rows call on this rank so far */
    int status_file_refused; /* rank 0: --status-file was refused up front (said then; not written) */
    LoadWatch load; /* the thread count sower chose (no pipeline.threads) follows the load (render.c); else zero */
} Run;

#endif /* SOWER_RUN_STATE_H */
