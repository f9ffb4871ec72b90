/* test_row_message.c: the typed row message rank -> writer (src/sweep/row_message.h), without MPI:
 * its size, where the digests and latents sit, and the receiver's checks of what arrived. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "row_message.h"

static int failures;

#define EXPECT(cond, what)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, what, #cond);                       \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

int main(void)
{
    const size_t per = 3 * 4 * 5; /* (C, H, W) = (3, 4, 5) */
    EXPECT(row_message_bytes(per, 0, 0) == sizeof(RowHeader), "an end message is its header");
    EXPECT(row_message_bytes(per, 0, 7) == sizeof(RowHeader) + 7 * (DIGEST_BYTES + 4 * per), "7 rows");
    EXPECT(row_message_bytes(SIZE_MAX / 2, 0, 3) == UINT64_MAX, "overflow is reported, not wrapped");
    EXPECT(row_message_bytes(1 << 20, 0, UINT64_C(1) << 44) == UINT64_MAX, "overflow of the row count");

    RowMessage m, in;
    EXPECT(row_message_init(&m, per, 0, 8) == SOWER_OK, "init");
    EXPECT(row_message_init(&in, per, 0, 8) == SOWER_OK, "init");
    row_message_begin(&m, UINT64_C(5000000000), 3); /* a job row past 2^32 */
    EXPECT(m.digests == m.buf + sizeof(RowHeader), "digests follow the header");
    EXPECT((unsigned char *)m.latents == m.buf + sizeof(RowHeader) + 3 * DIGEST_BYTES,
           "latents follow the digests");
    EXPECT((uintptr_t)m.latents % sizeof(float) == 0, "latents are aligned");
    for (size_t i = 0; i < 3 * per; i++)
        m.latents[i] = (float)i * 0.5f;
    for (size_t i = 0; i < 3 * DIGEST_BYTES; i++)
        m.digests[i] = (unsigned char)(i * 7);
    const uint64_t bytes = row_message_size(&m);
    EXPECT(bytes == row_message_bytes(per, 0, 3), "size of 3 rows");

    /* What the receiver gets: the same bytes, in a buffer of its own. */
    memcpy(in.buf, m.buf, bytes);
    EXPECT(row_message_unpack(&in, bytes, 2) == SOWER_OK, "unpack");
    EXPECT(in.head->row0 == UINT64_C(5000000000) && in.head->n == 3 && !in.head->stopped, "header");
    EXPECT(!memcmp(in.latents, m.latents, 3 * per * sizeof(float)) &&
               !memcmp(in.digests, m.digests, 3 * DIGEST_BYTES),
           "rows arrive intact");
    EXPECT(row_message_unpack(&in, bytes - 4, 2) == SOWER_EINTERNAL, "a short message is refused");
    EXPECT(row_message_unpack(&in, 10, 2) == SOWER_EINTERNAL, "less than a header is refused");
    in.head->n = 9; /* more rows than the buffer holds */
    EXPECT(row_message_unpack(&in, row_message_bytes(per, 0, 9), 2) == SOWER_EINTERNAL,
           "over capacity is refused");

    row_message_end(&m, 1);
    EXPECT(row_message_size(&m) == sizeof(RowHeader) && m.head->n == 0 && m.head->stopped == 1,
           "end, stopped");
    memcpy(in.buf, m.buf, sizeof(RowHeader));
    EXPECT(row_message_unpack(&in, sizeof(RowHeader), 1) == SOWER_OK && in.head->stopped, "end arrives");
    row_message_free(&m);
    row_message_free(&in);
    row_message_free(&in); /* safe twice: the struct is zeroed */

    /* pipeline.decode: each row's image digest and image follow the latents. */
    const size_t image = 3 * 16 * 20;
    EXPECT(row_message_bytes(per, image, 2) == sizeof(RowHeader) + 2 * (2 * DIGEST_BYTES + 4 * per + image), "images");
    RowMessage a, b;
    EXPECT(row_message_init(&a, per, image, 4) == SOWER_OK && row_message_init(&b, per, image, 4) == SOWER_OK, "init");
    row_message_begin(&a, 9, 2);
    EXPECT(a.image_digests == (unsigned char *)(a.latents + 2 * per) && a.images == a.image_digests + 2 * DIGEST_BYTES &&
               a.images + 2 * image == a.buf + row_message_size(&a),
           "image digests, then images, end the message");
    for (size_t i = 0; i < 2 * image; i++)
        a.images[i] = (unsigned char)(i * 13);
    memcpy(b.buf, a.buf, row_message_size(&a));
    EXPECT(row_message_unpack(&b, row_message_size(&a), 1) == SOWER_OK && !memcmp(b.images, a.images, 2 * image),
           "images arrive intact");
    EXPECT(row_message_unpack(&b, row_message_bytes(per, 0, 2), 1) == SOWER_EINTERNAL,
           "a message without its images is refused");
    row_message_free(&a);
    row_message_free(&b);
    sower_error_clear();

    /* A batch whose message would exceed MPI's int count is bad input, said before any rendering. */
    RowMessage big;
    EXPECT(row_message_init(&big, 4 * 512 * 512, 0, 1024) == SOWER_EINPUT,
           "a 1024 x 4 MiB batch exceeds INT_MAX bytes");
    EXPECT(big.buf == NULL, "nothing allocated");
    row_message_free(&big);
    sower_error_clear();

    printf("test_row_message: %d failures\n", failures);
    return failures ? 1 : 0;
}
