/* fuzz_safetensors.c: weight files (safetensors_open: header length, JSON header, dtypes, shapes,
 * offsets), and their tensor names as `sower convert` reads a single-file checkpoint's
 * (ldm_map_name) and the configs it infers from them (ldm_infer_configs). The input is the whole file, handed over as an in-memory file so that it is mapped
 * as a real one is. A file either opens with every tensor inside the mapping, its size matching its
 * shape and findable by its name, each name mapped, ignored or unknown with well-formed targets, or
 * fails with exit code 2 and a message naming the file. */
#define _GNU_SOURCE /* memfd_create */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "ldm_config.h"
#include "ldm_names.h"
#include "safetensors.h"

/* A checkpoint's name maps to 1 target (3 for a fused in_proj), each a NUL-terminated name of a part. */
static void check_ldm_name(const char *name)
{
    static const LdmLayout layout = {2, 4, 23};
    LdmTarget targets[3];
    int n = 0;
    const char *family = NULL;
    const LdmResult r = ldm_map_name(&layout, name, targets, &n, &family);
    if (r != LDM_MAPPED) return;
    FUZZ_ASSERT(n == 1 || n == 3, "%s: %d targets", name, n);
    for (int k = 0; k < n; k++)
        FUZZ_ASSERT(targets[k].part >= 0 && targets[k].part < LDM_PARTS && memchr(targets[k].name, 0, sizeof targets[k].name) &&
                        targets[k].name[0],
                    "%s: a malformed target", name);
}

static void check_tensors(const StFile *f)
{
    volatile float sink = 0.0f;
    const unsigned char *map = f->map;
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        check_ldm_name(t->name);
        FUZZ_ASSERT(t->stored >= map && t->stored_bytes <= f->map_bytes && t->stored - map <= (ptrdiff_t)(f->map_bytes - t->stored_bytes),
                    "%s: stored bytes outside the mapping", t->name);
        int64_t numel = 1;
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS, "%s: %d dims", t->name, t->ndim);
        for (int d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        FUZZ_ASSERT(numel == t->numel, "%s: numel %lld, shape says %lld", t->name, (long long)t->numel,
                    (long long)numel);
        FUZZ_ASSERT(safetensors_find(f, t->name) == t, "%s: not found by its name", t->name);
        if (i > 0)
            FUZZ_ASSERT(strcmp(f->tensors[i - 1].name, t->name) < 0, "%s: names not sorted and unique", t->name);
        if (t->file_dtype == ST_INTEGER) {
            FUZZ_ASSERT(t->data == NULL, "%s: an integer buffer has float data", t->name);
        } else if (t->numel > 0) { /* the ends are readable (the sanitizers or a fault say otherwise) */
            FUZZ_ASSERT(t->data != NULL, "%s: no data", t->name);
            sink += t->data[0] + t->data[t->numel - 1];
        }
    }
    (void)sink;
}

/* `sower convert --tokenizer`: configs inferred from the names and shapes, or exit code 2 naming the file. */
static void check_inferred_configs(const StFile *f)
{
    static const LdmTokenIds ids = {49406, 49407, 49407};
    LdmConfigs c;
    const int status = ldm_infer_configs(f, &ids, &c);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, f->path);
        return;
    }
    FUZZ_ASSERT(c.unet && c.vae && c.text_encoder && c.scheduler && c.model_index && c.family,
                "inferred configs missing");
    FUZZ_ASSERT(c.layout.unet_layers_per_block >= 1 && c.layout.vae_up_blocks >= 1 && c.layout.text_layers >= 1,
                "an inferred layout of %d/%d/%d", c.layout.unet_layers_per_block, c.layout.vae_up_blocks,
                c.layout.text_layers);
    ldm_configs_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.safetensors", 0);
    FUZZ_ASSERT(fd >= 0, "memfd_create failed");
    FUZZ_ASSERT(size == 0 || write(fd, data, size) == (ssize_t)size, "cannot write the input");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    StFile f;
    memset(&f, 0, sizeof f);
    int status = safetensors_open(&f, path);
    if (status == SOWER_OK) {
        check_tensors(&f);
        check_inferred_configs(&f);
    } else
        fuzz_expect_input_error(status, path);
    safetensors_close(&f);
    close(fd);
    return 0;
}
