/* strmap.h: a map from byte strings to int32 values (open addressing, FNV-1a), for vocabularies and
 * merge ranks. Keys are copied into the map's own arena; lookups never allocate. */
#ifndef SOWER_STRMAP_H
#define SOWER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct {
    char **keys;      /* (capacity,) NULL where empty; each key NUL-terminated (len in lens) */
    size_t *lens;     /* (capacity,) */
    int32_t *values;  /* (capacity,) */
    size_t capacity;  /* a power of two */
    size_t count;
} StrMap;

/* An empty map sized for about `expected` keys. */
int strmap_init(StrMap *m, size_t expected) SOWER_MUST_CHECK;
void strmap_free(StrMap *m); /* safe on a zeroed map */
/* Sets key -> value (replacing a previous value; *replaced says whether there was one, may be NULL). */
int strmap_put(StrMap *m, const char *key, size_t len, int32_t value, int *replaced) SOWER_MUST_CHECK;
/* 1 and *value when present, else 0. */
int strmap_get(const StrMap *m, const char *key, size_t len, int32_t *value);

#endif /* SOWER_STRMAP_H */
