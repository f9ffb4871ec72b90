/* fuzz_safetensors.c: weight files (safetensors_open: header length, JSON header, dtypes, shapes,
 * offsets). The input is the whole file, handed over as an in-memory file so that it is mapped as a
 * real one is. A file either opens with every tensor inside the mapping, its size matching its
 * shape and findable by its name, or fails with exit code 2 and a message naming the file. */
#define _GNU_SOURCE /* memfd_create */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "safetensors.h"

static void check_tensors(const StFile *f)
{
    volatile float sink = 0.0f;
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
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
    if (status == SOWER_OK)
        check_tensors(&f);
    else
        fuzz_expect_input_error(status, path);
    safetensors_close(&f);
    close(fd);
    return 0;
}
