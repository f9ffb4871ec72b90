/* seeds.h: sower's one seed syntax, shared by the command line (--seed, --seeds) and job manifests
 * (seeds.list): a uint64 "42" (decimal, or 0x hex), a negative "-1" taken as two's complement as
 * torch's manual_seed takes it (-2^63..-1, so -1 is 2^64-1), or an inclusive range "A-B" of
 * non-negative seeds with A <= B. */
#ifndef SOWER_SEEDS_H
#define SOWER_SEEDS_H

#include <stddef.h>
#include <stdint.h>

/* One item of text[0..len): 0 with *lo..*hi (equal for a single seed); SEED_REVERSED for a range
 * that ends before it starts; -1 for anything else. */
enum { SEED_REVERSED = -2 };
int seed_item_parse(const char *text, size_t len, uint64_t *lo, uint64_t *hi);

#endif /* SOWER_SEEDS_H */
