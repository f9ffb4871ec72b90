/* digest.c: SHA-256 through OpenSSL's EVP interface. */
#include "digest.h"

#include <openssl/err.h>
#include <openssl/evp.h>

/* The failure of an OpenSSL call: SOWER_ENOMEM when its error queue holds an allocation failure (a run under an
 * address-space cap meets it: exit 3 "out of memory", not an internal error), else SOWER_EINTERNAL. Empties the
 * queue, so that a later failure is judged on its own errors. */
static int openssl_failure(const char *what)
{
    int ran_out = 0;
    char first[256] = "";
    for (unsigned long e; (e = ERR_get_error()) != 0;) {
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE) ran_out = 1;
        if (!first[0]) ERR_error_string_n(e, first, sizeof first);
    }
    if (ran_out) return SOWER_FAIL(SOWER_ENOMEM, "out of memory in OpenSSL's SHA-256 (%s)", what);
    return SOWER_FAIL(SOWER_EINTERNAL, "OpenSSL's SHA-256 failed (%s): %s", what, first[0] ? first : "no error given");
}

int digest_init(Digest *d)
{
    d->ctx = EVP_MD_CTX_new();
    if (!d->ctx)
        return SOWER_FAIL(SOWER_ENOMEM, "cannot allocate a SHA-256 context");
    if (EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
        digest_free(d);
        return openssl_failure("start");
    }
    return SOWER_OK;
}

int digest_update(Digest *d, const void *data, size_t bytes)
{
    if (bytes && EVP_DigestUpdate(d->ctx, data, bytes) != 1)
        return openssl_failure("update");
    return SOWER_OK;
}

int digest_final(Digest *d, unsigned char *out)
{
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(d->ctx, out, &len) == 1 && len == DIGEST_BYTES;
    digest_free(d);
    if (!ok)
        return openssl_failure("final");
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
