/* test_rng_reference.c: sower's generator against real torch, bit for bit.
 * Reads tests/data/torch_rng_reference.json (made by validate/make_torch_rng_reference.py with
 * torch; rerun that script to regenerate it) and replays every vector: same seed, same randn calls
 * on one generator, the same get_state/set_state hand-over; compares the SHA-256 of all output
 * bytes and of the final state image. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli.h"
#include "digest.h"
#include "outfile.h"
#include "rng.h"

enum { REFERENCE_MAX_BYTES = 16 << 20 };

static uint64_t parse_seed(const char *text)
{
    uint64_t seed = 0;
    if (cli_parse_u64("seed", text, 1, &seed) != SOWER_OK) {
        fprintf(stderr, "bad seed '%s' in the reference file\n", text);
        exit(1);
    }
    return seed;
}

static size_t call_numel(const cJSON *call)
{
    size_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(call, "shape")) numel *= (size_t)d->valuedouble;
    return numel;
}

/* Replays one vector; returns 1 if output and state digests match torch's. */
static int replay(const cJSON *v)
{
    const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
    RngKernel kernel;
    if (rng_kernel_parse(cJSON_GetObjectItem(v, "generator")->valuestring, &kernel) != SOWER_OK) {
        fprintf(stderr, "%s: %s\n", name, sower_error_message());
        return 0;
    }
    const cJSON *after = cJSON_GetObjectItem(v, "set_state_after");
    int set_state_after = cJSON_IsNumber(after) ? after->valueint : -1;

    TorchRng g = {0};
    rng_seed(&g, parse_seed(cJSON_GetObjectItem(v, "seed")->valuestring));
    Digest digest = {0};
    if (digest_init(&digest) != SOWER_OK)
        return 0;
    int index = 0;
    const cJSON *call;
    cJSON_ArrayForEach(call, cJSON_GetObjectItem(v, "calls"))
    {
        if (index++ == set_state_after) {
            unsigned char image[RNG_STATE_IMAGE_BYTES];
            rng_get_state(&g, image);
            TorchRng fresh = {0};
            rng_seed(&fresh, parse_seed(cJSON_GetObjectItem(v, "restore_seed")->valuestring));
            if (rng_set_state(&fresh, image, sizeof image) != SOWER_OK)
                return 0;
            g = fresh;
        }
        size_t n = call_numel(call);
        int f64 = strcmp(cJSON_GetObjectItem(call, "dtype")->valuestring, "float64") == 0;
        void *values = malloc(n ? n * (f64 ? 8 : 4) : 1); /* (n,) float or double */
        if (f64)
            rng_randn_f64(&g, values, n);
        else
            rng_randn_f32(&g, kernel, values, n);
        int ok = digest_update(&digest, values, n * (f64 ? 8 : 4)) == SOWER_OK;
        free(values);
        if (!ok)
            return 0;
    }
    unsigned char out_sha[DIGEST_BYTES], state_sha[DIGEST_BYTES], image[RNG_STATE_IMAGE_BYTES];
    char out_hex[DIGEST_HEX_CHARS], state_hex[DIGEST_HEX_CHARS];
    if (digest_final(&digest, out_sha) != SOWER_OK)
        return 0;
    rng_get_state(&g, image);
    if (digest_buffer(image, sizeof image, state_sha) != SOWER_OK)
        return 0;
    digest_hex(out_sha, out_hex);
    digest_hex(state_sha, state_hex);
    int out_ok = strcmp(out_hex, cJSON_GetObjectItem(v, "output_sha256")->valuestring) == 0;
    int state_ok = strcmp(state_hex, cJSON_GetObjectItem(v, "state_sha256")->valuestring) == 0;
    CHECK(out_ok, "%s: output sha256 %s, torch %s", name, out_hex,
          cJSON_GetObjectItem(v, "output_sha256")->valuestring);
    CHECK(state_ok, "%s: state sha256 %s, torch %s", name, state_hex,
          cJSON_GetObjectItem(v, "state_sha256")->valuestring);
    return out_ok && state_ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_rng_reference tests/data/torch_rng_reference.json\n");
        return 2;
    }
    unsigned char *text = NULL;
    size_t bytes = 0;
    if (file_read_all(argv[1], REFERENCE_MAX_BYTES, &text, &bytes) != SOWER_OK) {
        sower_error_print(stderr, 0);
        fprintf(stderr, "regenerate it with: /usr/bin/python3 validate/make_torch_rng_reference.py %s\n", argv[1]);
        return 1;
    }
    cJSON *doc = cJSON_ParseWithLength((const char *)text, bytes);
    free(text);
    CHECK(doc != NULL, "%s is not valid JSON", argv[1]);
    if (!doc)
        return check_exit("test_rng_reference");
    int matched = 0, total = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(doc, "vectors"))
    {
        total++;
        matched += replay(v);
    }
    CHECK(total >= 200, "expected at least 200 reference vectors, found %d", total);
    printf("torch %s reference: %d of %d vectors bit-identical (output and state)\n",
           cJSON_GetObjectItem(doc, "torch_version")->valuestring, matched, total);
    cJSON_Delete(doc);
    return check_exit("test_rng_reference");
}
