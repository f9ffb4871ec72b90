/* fuzz_replay.c: runs a fuzz target (linked beside it) over files and folders of inputs, for the
 * builds without libFuzzer: ctest replays the committed corpora through it.
 * usage: fuzz_replay_TARGET PATH... (a folder: every regular file in it, not recursing) */
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz.h"

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_replay: cannot open %s\n", path);
        return 1;
    }
    uint8_t *data = NULL; /* (size,) the whole file */
    size_t size = 0, cap = 0, got;
    do {
        if (size == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *grown = realloc(data, cap);
            FUZZ_ASSERT(grown != NULL, "out of memory");
            data = grown;
        }
        got = fread(data + size, 1, cap - size, f);
        size += got;
    } while (got > 0);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
        free(data);
        return 1;
    }
    /* An exact-size copy, so the sanitizers see a read past the input's end. */
    uint8_t *exact = malloc(size ? size : 1);
    FUZZ_ASSERT(exact != NULL, "out of memory");
    memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every regular file of dir, in name order (so a report names the same input each run). */
static int replay_folder(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz_replay: cannot open folder %s\n", dir);
        return 1;
    }
    char **paths = NULL; /* (n,) */
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        char **grown = realloc(paths, (n + 1) * sizeof *paths);
        FUZZ_ASSERT(p != NULL && grown != NULL, "out of memory");
        snprintf(p, len, "%s/%s", dir, e->d_name);
        paths = grown, paths[n++] = p;
    }
    closedir(d);
    qsort(paths, n, sizeof *paths, name_cmp);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISREG(st.st_mode)) {
            bad |= replay_file(paths[i]);
            ++*count;
        }
        free(paths[i]);
    }
    free(paths);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH...\n", argv[0]);
        return 2;
    }
    int bad = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz_replay: no such file or folder: %s\n", argv[i]);
            bad = 1;
        } else if (S_ISDIR(st.st_mode)) {
            bad |= replay_folder(argv[i], &count);
        } else {
            bad |= replay_file(argv[i]);
            count++;
        }
    }
    printf("%s: %d inputs replayed, every property held\n", argv[0], count);
    return bad || count == 0;
}
