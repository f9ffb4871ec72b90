/* output.h: the file a run writes. Rank 0 creates it (or reopens OUT.partial to resume, or copies
 * the finished slices into it when stitching) and, at the end, records the run's facts in /run. */
#ifndef SOWER_OUTPUT_H
#define SOWER_OUTPUT_H

#include "err.h"
#include "h5out.h"
#include "run_state.h"
#include "sweep.h"

/* OUT.slice-K-of-N.h5 beside OUT.h5 (".h5" replaced, or the suffix appended); K zero-padded to N's
 * width so that slices sort. Caller frees; NULL when out of memory. */
char *output_slice_path(const char *out, int k, int n);
/* Rank 0: a new output, or the interrupted one (--resume, or --resume-auto when there is one),
 * marking in r->done the rows it already holds; with --resume-auto, a finished output of this job
 * sets r->finished_before and opens nothing. With --stitch, the slices are copied in. */
int output_open(Run *r, const RunOptions *o, H5Out *out) SOWER_MUST_CHECK;
/* Collective (the hosts are gathered): rank 0 writes /run (hosts, world size, batch, timings, the
 * model's path, which rank or slice rendered which rows) and prints the timings. */
int output_write_facts(Run *r, H5Out *out, double render_s, double verify_s) SOWER_MUST_CHECK;

#endif /* SOWER_OUTPUT_H */
