/* seed_sequence.c: numpy's SeedSequence: mix_entropy, get_assembled_entropy and generate_state as
 * numpy/random/bit_generator.pyx writes them (uint32 arithmetic wrapping as Cython's). */
#include "seed_sequence.h"

#include <assert.h>

#define INIT_A 0x43b0d7e5u
#define MULT_A 0x931e8875u
#define INIT_B 0x8b51f9ddu
#define MULT_B 0x58f38dedu
#define MIX_MULT_L 0xca01f9ddu
#define MIX_MULT_R 0x4973f715u
#define XSHIFT 16

static uint32_t hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= MULT_A;
    value *= *hash_const;
    value ^= value >> XSHIFT;
    return value;
}

static uint32_t mix(uint32_t x, uint32_t y)
{
    uint32_t result = MIX_MULT_L * x - MIX_MULT_R * y;
    result ^= result >> XSHIFT;
    return result;
}

int seed_sequence_int_words(uint64_t v, uint32_t words[2])
{
    words[0] = (uint32_t)v;
    words[1] = (uint32_t)(v >> 32);
    return words[1] ? 2 : 1;
}

void seed_sequence_state(const uint32_t *entropy, int n_entropy, const uint32_t *spawn, int n_spawn, int pool_size,
                         uint32_t *out, int n_out)
{
    assert(pool_size >= 4 && pool_size <= SEED_SEQUENCE_MAX_POOL && n_entropy + n_spawn <= SEED_SEQUENCE_MAX_WORDS);
    /* get_assembled_entropy: with a spawn key, the run entropy is padded with zeros to the pool size first */
    uint32_t assembled[SEED_SEQUENCE_MAX_POOL + SEED_SEQUENCE_MAX_WORDS]; /* (len,) */
    int len = 0;
    for (int i = 0; i < n_entropy; i++)
        assembled[len++] = entropy[i];
    if (n_spawn > 0)
        while (len < pool_size)
            assembled[len++] = 0;
    for (int i = 0; i < n_spawn; i++)
        assembled[len++] = spawn[i];
    /* mix_entropy */
    uint32_t pool[SEED_SEQUENCE_MAX_POOL]; /* (pool_size,) */
    uint32_t hash_const = INIT_A;
    for (int i = 0; i < pool_size; i++)
        pool[i] = hashmix(i < len ? assembled[i] : 0u, &hash_const);
    for (int src = 0; src < pool_size; src++)
        for (int dst = 0; dst < pool_size; dst++)
            if (src != dst)
                pool[dst] = mix(pool[dst], hashmix(pool[src], &hash_const));
    for (int src = pool_size; src < len; src++)
        for (int dst = 0; dst < pool_size; dst++)
            pool[dst] = mix(pool[dst], hashmix(assembled[src], &hash_const));
    /* generate_state: the pool cycled, each word hashed */
    uint32_t out_const = INIT_B;
    for (int i = 0; i < n_out; i++) {
        uint32_t v = pool[i % pool_size];
        v ^= out_const;
        out_const *= MULT_B;
        v *= out_const;
        v ^= v >> XSHIFT;
        out[i] = v;
    }
}
