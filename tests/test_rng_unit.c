/* test_rng_unit.c: properties of the torch-compatible generator that hold by specification
 * (docs/reference/torch-rng.md), independent of the reference file. */
#include <math.h>
#include <string.h>

#include <stdlib.h>

#include "check.h"
#include "philox.h"
#include "rng.h"

static void test_mt19937_engine(void)
{
    /* std::mt19937 with its default seed 5489: the 1st and 10000th outputs are standard values. */
    TorchRng g = {0};
    rng_seed(&g, 5489);
    uint32_t first = rng_random(&g);
    CHECK(first == 3499211612u, "first draw %u", first);
    for (int i = 2; i < 10000; i++)
        (void)rng_random(&g);
    uint32_t ten_thousandth = rng_random(&g);
    CHECK(ten_thousandth == 4123659995u, "10000th draw %u", ten_thousandth);
}

static void test_seed_truncation(void)
{
    /* Only the low 32 bits seed the engine; -1 is 2^64-1. */
    TorchRng a = {0}, b = {0};
    float va[40], vb[40];
    rng_seed(&a, 5);
    rng_seed(&b, (UINT64_C(1) << 32) + 5);
    rng_randn_f32(&a, RNG_KERNEL_TORCH_CPU, va, 40);
    rng_randn_f32(&b, RNG_KERNEL_TORCH_CPU, vb, 40);
    CHECK(memcmp(va, vb, sizeof va) == 0, "seeds 5 and 2^32+5 differ");
    unsigned char ia[RNG_STATE_IMAGE_BYTES], ib[RNG_STATE_IMAGE_BYTES];
    rng_get_state(&a, ia);
    rng_get_state(&b, ib);
    CHECK(memcmp(ia, ib, 8) != 0 && memcmp(ia + 8, ib + 8, sizeof ia - 8) == 0,
          "state images of 5 and 2^32+5 must differ exactly in initial_seed");
    CHECK(rng_seed_key(UINT64_MAX) == UINT32_MAX, "key of 2^64-1");
}

static void test_block_structure(void)
{
    /* randn(16) twice == randn(32); randn(17) and randn(33) agree only at element 0. */
    TorchRng g = {0};
    float two[32], one[32], a17[17], a33[33];
    rng_seed(&g, 0);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, two, 16);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, two + 16, 16);
    rng_seed(&g, 0);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, one, 32);
    CHECK(memcmp(two, one, sizeof one) == 0, "randn(16)+randn(16) != randn(32)");
    rng_seed(&g, 0);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, a17, 17);
    rng_seed(&g, 0);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, a33, 33);
    CHECK(a17[0] == a33[0] && a17[1] != a33[1], "randn(17) vs randn(33) block overlap");
    CHECK(g.left == 625 - (33 + 16) && g.next == 33 + 16, "draws consumed by randn(33): left %d next %u",
          (int)g.left, g.next);
}

static void test_double_spare(void)
{
    /* randn(1) then randn(1): r*cos, then the cached r*sin with no new draws. */
    TorchRng g = {0};
    float x, y;
    rng_seed(&g, 0);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, &x, 1);
    CHECK(g.has_double_normal && g.left == 621 && g.next == 4, "after randn(1): left %d next %u", (int)g.left,
          g.next);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, &y, 1);
    CHECK(!g.has_double_normal && g.next == 4, "second randn(1) must use the spare");
    CHECK(x == 1.5409961f, "torch.randn(1) for seed 0 is 1.5409961, found %.9g", x);
    /* rng_seed clears the spare. */
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, &x, 1);
    rng_seed(&g, 0);
    CHECK(!g.has_double_normal, "rng_seed must clear the spare");
}

static void test_state_round_trip(void)
{
    TorchRng a = {0}, b = {0};
    unsigned char image[RNG_STATE_IMAGE_BYTES];
    float va[20], vb[20];
    rng_seed(&a, 7);
    rng_randn_f32(&a, RNG_KERNEL_TORCH_CPU, va, 3);
    rng_get_state(&a, image);
    rng_seed(&b, 99);
    CHECK(rng_set_state(&b, image, sizeof image) == SOWER_OK, "set_state of a valid image failed");
    rng_randn_f32(&a, RNG_KERNEL_TORCH_CPU, va, 20);
    rng_randn_f32(&b, RNG_KERNEL_TORCH_CPU, vb, 20);
    CHECK(memcmp(va, vb, sizeof va) == 0, "restored generator diverged");

    /* Images torch would refuse are refused, and leave the generator unchanged. */
    TorchRng before = b;
    CHECK(rng_set_state(&b, image, sizeof image - 1) == SOWER_EINPUT, "short image accepted");
    unsigned char bad[RNG_STATE_IMAGE_BYTES];
    memcpy(bad, image, sizeof bad);
    memset(bad + 8, 0, 4); /* left = 0 */
    CHECK(rng_set_state(&b, bad, sizeof bad) == SOWER_EINPUT, "left = 0 accepted");
    memcpy(bad, image, sizeof bad);
    bad[16] = 0x71, bad[17] = 0x02; /* next = 625 */
    CHECK(rng_set_state(&b, bad, sizeof bad) == SOWER_EINPUT, "next = 625 accepted");
    memcpy(bad, image, sizeof bad);
    memset(bad + 12, 0, 4); /* seeded = 0 */
    CHECK(rng_set_state(&b, bad, sizeof bad) == SOWER_EINPUT, "unseeded image accepted");
    CHECK(memcmp(&before, &b, sizeof b) == 0, "a refused image changed the generator");
    sower_error_clear();
}

static void test_statistics(void)
{
    /* Sanity of the distribution over 2^20 values of both kernels: mean ~0, variance ~1. */
    enum { N = 1 << 20 };
    static float v[N];
    for (int k = 0; k < 2; k++) {
        TorchRng g = {0};
        rng_seed(&g, 1234);
        rng_randn_f32(&g, (RngKernel)k, v, N);
        double sum = 0, sum2 = 0;
        int finite = 1;
        for (int i = 0; i < N; i++) {
            sum += v[i];
            sum2 += (double)v[i] * v[i];
            finite &= isfinite(v[i]) != 0;
        }
        double mean = sum / N, var = sum2 / N - mean * mean;
        CHECK(finite && fabs(mean) < 0.005 && fabs(var - 1.0) < 0.01, "kernel %d: mean %g var %g", k, mean, var);
    }
}

static void test_kernel_names(void)
{
    RngKernel k;
    CHECK(rng_kernel_parse("torch-cpu", &k) == SOWER_OK && k == RNG_KERNEL_TORCH_CPU, "torch-cpu");
    CHECK(rng_kernel_parse("torch-cpu-scalar", &k) == SOWER_OK && k == RNG_KERNEL_TORCH_CPU_SCALAR, "scalar");
    CHECK(rng_kernel_parse("torch-cuda", &k) == SOWER_OK && k == RNG_KERNEL_TORCH_CUDA, "torch-cuda");
    CHECK(rng_kernel_parse("torch-xpu", &k) == SOWER_EINPUT, "unknown name accepted");
    CHECK(strstr(sower_error_message(), "torch-xpu") != NULL, "message must name the bad value");
    sower_error_clear();
}

/* Philox4x32-10's known answers (Random123's kat_vectors; cuRAND's curand_Philox4x32_10 gives the same). */
static void test_philox_known_answers(void)
{
    static const uint32_t cases[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        philox4x32_10(cases[c], cases[c] + 4, out);
        CHECK(memcmp(out, cases[c] + 6, sizeof out) == 0, "philox known answer %d: %08x %08x %08x %08x", c, out[0],
              out[1], out[2], out[3]);
    }
}

/* torch's launch rule on an H100/H200 (132 SMs, 2048 threads each: at most 1056 blocks of 256). */
static void test_torch_cuda_launch(void)
{
    const TorchCudaDevice h200 = {132, 2048};
    static const uint64_t cases[][4] = {/* numel, blocks, passes, offset growth */
                                        {1, 1, 1, 4},
                                        {4 * 64 * 64, 64, 1, 4},          /* SD's 64x64 latents: SM count irrelevant */
                                        {4 * 128 * 128, 256, 1, 4},       /* SDXL's 128x128 */
                                        {270336, 1056, 1, 4},             /* every thread of the capped grid */
                                        {270337, 1056, 1, 4},             /* lane 1 of thread 0 */
                                        {4 * 270336, 1056, 1, 4},         /* all four lanes */
                                        {4 * 270336 + 1, 1056, 2, 8}};    /* a second pass */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const TorchCudaLaunch l = torch_cuda_launch(cases[c][0], h200);
        CHECK(l.blocks == cases[c][1] && l.passes == cases[c][2] && l.counter_offset == cases[c][3],
              "launch of %llu: %llu blocks, %llu passes, +%llu", (unsigned long long)cases[c][0],
              (unsigned long long)l.blocks, (unsigned long long)l.passes, (unsigned long long)l.counter_offset);
    }
}

/* torch_cuda_element against a walk of torch's grid-stride loop (thread by thread, pass by pass,
 * lane by lane): every element exactly once, at the (thread, draw, lane) the loop gives it, and its
 * words those of curand_init(seed, thread, offset) followed by `draw` curand4 calls. */
static void test_torch_cuda_layout(void)
{
    const TorchCudaDevice small = {1, 1024}; /* 4 blocks at most: 1024 threads, 4096 values a pass */
    const uint64_t numel = 3 * 4096 + 77, seed = 0x123456789abcdefull, offset = 12;
    const TorchCudaLaunch l = torch_cuda_launch(numel, small);
    const uint64_t stride = l.blocks * TORCH_CUDA_BLOCK_THREADS;
    unsigned char *seen = calloc(numel, 1);
    int wrong = 0;
    for (uint64_t t = 0; t < stride; t++)
        for (uint64_t pass = 0; pass < l.passes; pass++)
            for (int lane = 0; lane < 4; lane++) {
                const uint64_t li = t + pass * 4 * stride + (uint64_t)lane * stride;
                if (li >= numel)
                    continue;
                seen[li]++;
                TorchCudaElement e;
                torch_cuda_element(seed, offset, l.blocks, li, &e);
                /* counter = (offset / 4 + pass) in words 0-1, thread in words 2-3 */
                const uint32_t ctr[4] = {(uint32_t)(offset / 4 + pass), 0, (uint32_t)t, 0};
                const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
                uint32_t words[4];
                philox4x32_10(ctr, key, words);
                wrong += e.thread != t || e.draw != pass || e.lane != lane || memcmp(words, e.words, sizeof words) != 0;
            }
    int once = 1;
    for (uint64_t i = 0; i < numel; i++)
        once &= seen[i] == 1;
    CHECK(l.blocks == 4 && l.passes == 4, "small launch: %llu blocks, %llu passes", (unsigned long long)l.blocks,
          (unsigned long long)l.passes);
    CHECK(once, "torch's loop must write every element once");
    CHECK(wrong == 0, "%d elements placed unlike torch's loop", wrong);
    free(seen);
}

int main(void)
{
    test_mt19937_engine();
    test_seed_truncation();
    test_block_structure();
    test_double_spare();
    test_state_round_trip();
    test_statistics();
    test_kernel_names();
    test_philox_known_answers();
    test_torch_cuda_launch();
    test_torch_cuda_layout();
    return check_exit("test_rng_unit");
}
