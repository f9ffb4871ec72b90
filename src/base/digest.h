/* digest.h: SHA-256 (OpenSSL EVP), for output rows, weight files and manifests. */
#ifndef SOWER_DIGEST_H
#define SOWER_DIGEST_H

#include <stddef.h>

#include "err.h"

enum { DIGEST_BYTES = 32, DIGEST_HEX_CHARS = 2 * DIGEST_BYTES + 1 /* with NUL */ };

typedef struct {
    void *ctx; /* EVP_MD_CTX*, kept opaque so OpenSSL headers stay out of ours */
} Digest;

int digest_init(Digest *d) SOWER_MUST_CHECK;
int digest_update(Digest *d, const void *data, size_t bytes) SOWER_MUST_CHECK;
/* Writes the digest (DIGEST_BYTES,) and releases the context. */
int digest_final(Digest *d, unsigned char *out) SOWER_MUST_CHECK;
/* Safe on a zeroed or finished Digest. */
void digest_free(Digest *d);

/* One-shot SHA-256 of a buffer. */
int digest_buffer(const void *data, size_t bytes, unsigned char *out) SOWER_MUST_CHECK;
/* Lower-case hex of a digest into hex (DIGEST_HEX_CHARS,). */
void digest_hex(const unsigned char *digest, char *hex);

#endif /* SOWER_DIGEST_H */
