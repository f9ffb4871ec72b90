/* cross_verify.h: the verification pass. A sample of the written rows (plan_verify_row) is rendered
 * again, each by a rank other than the one that rendered it (plan_verifier), and compared bit for
 * bit, digest and latent, with what the file holds; rank 0 records the outcome in /verify. */
#ifndef SOWER_CROSS_VERIFY_H
#define SOWER_CROSS_VERIFY_H

#include "err.h"
#include "h5out.h"
#include "run_state.h"

/* Collective: every rank re-renders its share of the plan's verify_n rows and sends them to rank
 * 0, which compares and writes /verify into out; *mismatches (rank 0) counts the rows that differ. */
int cross_verify(Run *r, H5Out *out, int *mismatches) SOWER_MUST_CHECK;

#endif /* SOWER_CROSS_VERIFY_H */
