/* digest.c: SHA-256 through OpenSSL's EVP interface. */
#include "digest.h"

#include <openssl/evp.h>

int digest_init(Digest *d)
{
    d->ctx = EVP_MD_CTX_new();
    if (!d->ctx)
        return SOWER_FAIL(SOWER_ENOMEM, "cannot allocate a SHA-256 context");
    if (EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
        digest_free(d);
        return SOWER_FAIL(SOWER_EINTERNAL, "OpenSSL refused to start SHA-256");
    }
    return SOWER_OK;
}

int digest_update(Digest *d, const void *data, size_t bytes)
{
    if (bytes && EVP_DigestUpdate(d->ctx, data, bytes) != 1)
        return SOWER_FAIL(SOWER_EINTERNAL, "OpenSSL SHA-256 update failed");
    return SOWER_OK;
}

int digest_final(Digest *d, unsigned char *out)
{
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(d->ctx, out, &len) == 1 && len == DIGEST_BYTES;
    digest_free(d);
    if (!ok)
        return SOWER_FAIL(SOWER_EINTERNAL, "OpenSSL SHA-256 final failed");
    return SOWER_OK;
}

void digest_free(Digest *d)
{
    EVP_MD_CTX_free(d->ctx);
    d->ctx = NULL;
}

int digest_buffer(const void *data, size_t bytes, unsigned char *out)
{
    Digest d = {0};
    SOWER_TRY(digest_init(&d));
    int status = digest_update(&d, data, bytes);
    if (status != SOWER_OK) {
        digest_free(&d);
        return sower_trace(status, __FILE__, __LINE__, __func__);
    }
    SOWER_TRY(digest_final(&d, out));
    return SOWER_OK;
}

void digest_hex(const unsigned char *digest, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < DIGEST_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * DIGEST_BYTES] = '\0';
}
