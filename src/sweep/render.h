/* render.h: the render pass. Every rank renders its part of the plan in batches; rank 0 also
 * writes: its own batches and the RowMessages the others send, until every rank has ended its
 * part (finished it, or stopped early on a signal: stop.h). */
#ifndef SOWER_RENDER_H
#define SOWER_RENDER_H

#include <stdint.h>

#include "err.h"
#include "h5out.h"
#include "run_state.h"

/* Renders job rows [row0, row0 + n) into latents (n, per) and their digests (n, DIGEST_BYTES),
 * applying r->faults (test hooks); with pipeline.decode also their images (n, r->images.bytes) and
 * the images' digests (n, DIGEST_BYTES) (else both NULL). SOWER_ESTOPPED when a stop signal came
 * mid-batch. */
int render_rows(Run *r, uint64_t row0, uint64_t n, float *latents, unsigned char *digests, unsigned char *images,
                unsigned char *image_digests) SOWER_MUST_CHECK;
/* Rank 0: renders its part and writes it and every other rank's into out. start: MPI_Wtime() of
 * the pass's start (progress lines). *stopped: some rows are still missing. */
int render_and_write(Run *r, H5Out *out, double start, int *stopped) SOWER_MUST_CHECK;
/* Other ranks: render the part and send each batch to rank 0; stop early on a signal or when rank
 * 0 says so; then send the end and wait for rank 0's one TAG_STOP (no message is left unmatched). */
int render_and_send(Run *r) SOWER_MUST_CHECK;

#endif /* SOWER_RENDER_H */
