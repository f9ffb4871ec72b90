/* philox.c: see philox.h. */
#include "philox.h"

enum {
    PHILOX_ROUNDS = 10,
};
static const uint32_t PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u; /* round multipliers */
static const uint32_t PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u; /* key schedule (Weyl) */

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        const uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0, k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* ctr (128 bits, word 0 least significant) += n << (64 * half): half 0 as curand's skipahead adds to
 * words 0-1, half 1 as its skipahead_sequence adds to words 2-3; carries run up to word 3. */
static void counter_add(uint32_t ctr[4], uint64_t n, int half)
{
    uint64_t carry = 0;
    for (int w = 2 * half; w < 4; w++) {
        const uint64_t add = w - 2 * half < 2 ? (n >> (32 * (w - 2 * half))) & 0xFFFFFFFFu : 0;
        const uint64_t sum = (uint64_t)ctr[w] + add + carry;
        ctr[w] = (uint32_t)sum;
        carry = sum >> 32;
    }
}

void torch_cuda_element(uint64_t seed, uint64_t offset, uint64_t blocks, uint64_t i, TorchCudaElement *e)
{
    const uint64_t stride = blocks * TORCH_CUDA_BLOCK_THREADS; /* threads in the grid */
    const uint64_t pass_span = stride * TORCH_CUDA_NORMALS_PER_DRAW;
    const uint64_t within = i % pass_span;
    e->draw = i / pass_span;
    e->lane = (int)(within / stride);
    e->thread = within % stride;
    uint32_t ctr[4] = {0, 0, 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    counter_add(ctr, e->thread, 1); /* curand_init: skipahead_sequence(subsequence) */
    counter_add(ctr, offset / 4, 0); /* skipahead(offset), offset % 4 == 0 */
    counter_add(ctr, e->draw, 0);    /* one counter per curand4 */
    philox4x32_10(ctr, key, e->words);
}
