/* test_brownian: the Brownian tree of diffusers' DPMSolverSDEScheduler (src/model/schedulers/brownian.c: torchsde
 * 0.2.6's BrownianInterval, halfway tree, tol 1e-6, pool 24) and numpy's SeedSequence (src/rng/seed_sequence.c)
 * against tests/data/brownian_reference.json (validate/make_brownian_reference.py): every increment's float32 bytes
 * (sha256) for trees of several entropies (0 to 2^64 - 1), ranges and sizes (torch's randn paths below and above 16
 * values), over the queries DPMSolverSDEScheduler makes and others (clamped, equal ends, any order); the query
 * torchsde cannot answer (RecursionError) refused. Exit 0 when all match. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "reference_file.h"
#include "digest.h"
#include "rng.h"
#include "schedulers/brownian.h"
#include "seed_sequence.h"


static const char *str(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static int draws; /* fresh generators made */

/* torch.randn(n, generator=torch.Generator().manual_seed(seed)), torch 1.13 on an AVX2 CPU */
static int draw_cpu(void *ctx, uint64_t seed, float *out, size_t n)
{
    (void)ctx;
    TorchRng g = {0};
    rng_seed(&g, seed);
    rng_randn_f32(&g, RNG_KERNEL_TORCH_CPU, out, n);
    draws++;
    return SOWER_OK;
}

static void check_tree(const cJSON *tree, int index)
{
    const uint64_t entropy = strtoull(str(tree, "entropy"), NULL, 10);
    const double t0 = strtod(str(tree, "t0"), NULL), t1 = strtod(str(tree, "t1"), NULL);
    const size_t n = (size_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(tree, "numel"));
    BrownianPlan *plan = brownian_plan_new(t0, t1);
    float *w = malloc(n * sizeof *w); /* (n,) */
    CHECK(plan && w, "tree %d: out of memory", index);
    if (!plan || !w)
        goto done;
    int q_index = 0;
    const cJSON *q;
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(tree, "queries"))
    {
        const double ta = strtod(str(q, "ta"), NULL), tb = strtod(str(q, "tb"), NULL);
        int query = -1;
        const int status = brownian_plan_query(plan, ta, tb, &query);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "refused"))) {
            CHECK(status == SOWER_EINPUT, "tree %d query %d [%a, %a]: torchsde recurses without end, sower gave %d",
                  index, q_index, ta, tb, status);
            q_index++;
            continue;
        }
        CHECK(status == SOWER_OK, "tree %d query %d [%a, %a]: refused", index, q_index, ta, tb);
        if (status == SOWER_OK) {
            CHECK(brownian_increment(plan, query, entropy, draw_cpu, NULL, w, n) == SOWER_OK, "tree %d query %d",
                  index, q_index);
            unsigned char digest[32];
            char hex[65];
            CHECK(digest_buffer(w, n * sizeof *w, digest) == SOWER_OK, "sha256");
            digest_hex(digest, hex);
            const int same = strcmp(hex, str(q, "sha256")) == 0;
            CHECK(same, "tree %d (entropy %" PRIu64 ", %zu values) query %d [%a, %a]: first values %a %a, torchsde's %s %s",
                  index, entropy, n, q_index, ta, tb, (double)w[0], (double)w[n > 1], 
                  cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(q, "first"), 0)),
                  cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(q, "first"), n > 1)));
        }
        q_index++;
    }
done:
    brownian_plan_free(plan);
    free(w);
}

static void check_seed_sequence(const cJSON *s)
{
    uint32_t entropy[2], spawn[8], state[4];
    const int n_entropy = seed_sequence_int_words(strtoull(str(s, "entropy"), NULL, 10), entropy);
    int n_spawn = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(s, "spawn_key"))
        n_spawn += seed_sequence_int_words(strtoull(cJSON_GetStringValue(k), NULL, 10), spawn + n_spawn);
    const int pool = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "pool_size"));
    seed_sequence_state(entropy, n_entropy, spawn, n_spawn, pool, state, 4);
    for (int i = 0; i < 4; i++) {
        const uint32_t want = (uint32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(s, "state"), i));
        CHECK(state[i] == want, "SeedSequence(%s, spawn %d words, pool %d) word %d: %u, numpy's %u", str(s, "entropy"),
              n_spawn, pool, i, state[i], want);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_brownian tests/data/brownian_reference.json\n");
        return 2;
    }
    char *text = reference_file_read(argv[1]);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(root != NULL, "cannot read %s", argv[1]);
    int index = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "trees"))
        check_tree(item, index++);
    CHECK(index >= 10, "%d trees in the reference", index);
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "seed_sequences"))
        check_seed_sequence(item);
    /* a tree over a range no schedule makes: refused, not a spawn key past 64 bits */
    BrownianPlan *wide = brownian_plan_new(0.0, 1e30);
    int q;
    CHECK(wide && brownian_plan_query(wide, 0.5, 1.0, &q) == SOWER_EINPUT, "a tree 1e30 wide is refused");
    brownian_plan_free(wide);
    printf("test_brownian: %d fresh generators drawn\n", draws);
    cJSON_Delete(root);
    return check_exit("test_brownian");
}
