/* brownian.h: torchsde 0.2.6's BrownianInterval as diffusers' DPMSolverSDEScheduler builds it (halfway_tree=True,
 * tol=1e-6, pool_size=24, no Levy area), bit for bit: the increments W(ta, tb) of a Brownian motion on [t0, t1]
 * that one entropy integer fixes whatever the order of the queries.
 *
 * The tree is dyadic: every interval splits at its midpoint rounded to 6 decimals (Python's round(x, 6)), down to
 * where a query's ends fall on a split. An interval's increment is drawn from its parent's by the Brownian bridge,
 * with the noise of a fresh torch generator seeded by numpy's SeedSequence(entropy, spawn_key=(key, depth),
 * pool_size=24) (rng/seed_sequence.h); the whole interval's from SeedSequence(entropy, pool_size=24). Which
 * intervals a query sums does not depend on the entropy, so a plan (BrownianPlan) holds them once for every
 * sample, and brownian_increment makes one sample's values. */
#ifndef SOWER_BROWNIAN_H
#define SOWER_BROWNIAN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* torch.randn(n, generator=torch.Generator().manual_seed(seed)) into out (n,): the caller's generator (CPU or
 * CUDA, as the samples' own). */
typedef int (*BrownianDrawFn)(void *ctx, uint64_t seed, float *out, size_t n);

typedef struct BrownianPlan BrownianPlan;

/* A tree over [t0, t1] (Python floats: the float32 sigmas as doubles); NULL when out of memory. */
BrownianPlan *brownian_plan_new(double t0, double t1);
void brownian_plan_free(BrownianPlan *p);
/* Adds the query tree(ta, tb) (ta <= tb; clamped to the tree's range as torchsde clamps it, with its warning
 * unsaid) and returns its index in *query. SOWER_EINPUT when torchsde could not answer it (ta > tb, or a split
 * that does not settle: ends closer than the 1e-6 resolution). */
int brownian_plan_query(BrownianPlan *p, double ta, double tb, int *query) SOWER_MUST_CHECK;

/* The increment of query q for one sample: out (n,) float32, from `entropy` (the BrownianInterval's), each node's
 * noise made by draw. SOWER_ENOMEM, or what draw returns. */
int brownian_increment(const BrownianPlan *p, int q, uint64_t entropy, BrownianDrawFn draw, void *ctx, float *out,
                       size_t n) SOWER_MUST_CHECK;

#endif /* SOWER_BROWNIAN_H */
