/* seed_sequence.h: numpy's SeedSequence (numpy/random/bit_generator.pyx, stable since numpy 1.19), bit for bit:
 * the hash that turns an entropy integer and a spawn key into seed words. torchsde's Brownian tree seeds every
 * node's torch generator with it (model/schedulers/brownian.c). */
#ifndef SOWER_SEED_SEQUENCE_H
#define SOWER_SEED_SEQUENCE_H

#include <stddef.h>
#include <stdint.h>

enum {
    SEED_SEQUENCE_MAX_POOL = 64,  /* pool_size words this implementation takes (numpy's default is 4) */
    SEED_SEQUENCE_MAX_WORDS = 16, /* entropy + spawn key words */
};

/* A non-negative integer as numpy coerces it: its 32-bit words, least significant first ([0] for 0).
 * Returns the count (1 or 2). */
int seed_sequence_int_words(uint64_t v, uint32_t words[2]);

/* SeedSequence(entropy, spawn_key=spawn, pool_size=pool_size).generate_state(n_out) (uint32): entropy and spawn
 * are the words of the entropy integer and of the spawn key's integers in order (seed_sequence_int_words each);
 * n_spawn 0 is no spawn key. pool_size 4..SEED_SEQUENCE_MAX_POOL, n_entropy + n_spawn + pool_size <=
 * SEED_SEQUENCE_MAX_WORDS + pool_size. */
void seed_sequence_state(const uint32_t *entropy, int n_entropy, const uint32_t *spawn, int n_spawn, int pool_size,
                         uint32_t *out, int n_out);

#endif /* SOWER_SEED_SEQUENCE_H */
