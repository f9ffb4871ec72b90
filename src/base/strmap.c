/* strmap.c: see strmap.h. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

int strmap_init(StrMap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < 2 * expected + 1) /* load factor at most 1/2 */
        cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->lens = calloc(cap, sizeof *m->lens);
    m->values = calloc(cap, sizeof *m->values);
    m->capacity = cap;
    if (!m->keys || !m->lens || !m->values) {
        strmap_free(m);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a map of %zu strings", expected);
    }
    return SOWER_OK;
}

void strmap_free(StrMap *m)
{
    if (m->keys)
        for (size_t i = 0; i < m->capacity; i++)
            free(m->keys[i]);
    free(m->keys);
    free(m->lens);
    free(m->values);
    memset(m, 0, sizeof *m);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t slot_of(const StrMap *m, const char *key, size_t len)
{
    size_t i = (size_t)fnv1a(key, len) & (m->capacity - 1);
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & (m->capacity - 1);
    return i;
}

static int grow(StrMap *m)
{
    StrMap bigger;
    SOWER_TRY(strmap_init(&bigger, m->capacity));
    for (size_t i = 0; i < m->capacity; i++)
        if (m->keys[i]) {
            size_t j = slot_of(&bigger, m->keys[i], m->lens[i]);
            bigger.keys[j] = m->keys[i], bigger.lens[j] = m->lens[i], bigger.values[j] = m->values[i];
            m->keys[i] = NULL;
        }
    bigger.count = m->count;
    strmap_free(m);
    *m = bigger;
    return SOWER_OK;
}

int strmap_put(StrMap *m, const char *key, size_t len, int32_t value, int *replaced)
{
    if (2 * (m->count + 1) > m->capacity)
        SOWER_TRY(grow(m));
    size_t i = slot_of(m, key, len);
    if (replaced)
        *replaced = m->keys[i] != NULL;
    if (!m->keys[i]) {
        char *copy = malloc(len + 1);
        if (!copy)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a %zu-byte key", len);
        memcpy(copy, key, len);
        copy[len] = '\0';
        m->keys[i] = copy, m->lens[i] = len;
        m->count++;
    }
    m->values[i] = value;
    return SOWER_OK;
}

int strmap_get(const StrMap *m, const char *key, size_t len, int32_t *value)
{
    if (!m->capacity)
        return 0;
    size_t i = slot_of(m, key, len);
    if (!m->keys[i])
        return 0;
    *value = m->values[i];
    return 1;
}
