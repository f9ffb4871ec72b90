/* row_message.c: the typed row message, rank -> writer (row_message.h). */
#include "row_message.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_check.h"

uint64_t row_message_bytes(size_t per, size_t image_bytes, uint64_t n)
{
    if (per > (UINT64_MAX / 4 - DIGEST_BYTES) / sizeof(float) || image_bytes > UINT64_MAX / 4) return UINT64_MAX;
    /* one row's digest and latent, and its image's digest and bytes */
    const uint64_t row = DIGEST_BYTES + sizeof(float) * (uint64_t)per + (image_bytes ? DIGEST_BYTES + image_bytes : 0);
    if (n && row > (UINT64_MAX - sizeof(RowHeader)) / n) return UINT64_MAX;
    return sizeof(RowHeader) + row * n;
}

int row_message_fits(size_t per, size_t image_bytes, uint64_t cap, const char *where)
{
    const uint64_t bytes = row_message_bytes(per, image_bytes, cap);
    if (bytes > INT_MAX) /* MPI counts are int: one message of MPI_BYTE holds at most INT_MAX */
        return SOWER_FAIL(SOWER_EINPUT,
                          "%s%sa batch of %llu rows of %zu floats%s needs %llu-byte messages, more than MPI's "
                          "%d: lower pipeline.batch (or --batch)",
                          where ? where : "", where ? ": " : "", (unsigned long long)cap, per,
                          image_bytes ? " and their images" : "", (unsigned long long)bytes, INT_MAX);
    return SOWER_OK;
}

int row_message_init(RowMessage *m, size_t per, size_t image_bytes, uint64_t cap)
{
    memset(m, 0, sizeof *m);
    SOWER_TRY(row_message_fits(per, image_bytes, cap, NULL));
    const uint64_t bytes = row_message_bytes(per, image_bytes, cap);
    /* malloc's alignment serves RowHeader; the latents start at a multiple of 8 bytes. */
    m->buf = malloc((size_t)bytes);
    if (!m->buf)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a %llu-byte row message",
                          (unsigned long long)bytes);
    m->per = per, m->image_bytes = image_bytes, m->cap = cap;
    m->head = (RowHeader *)(void *)m->buf;
    row_message_begin(m, 0, 0);
    return SOWER_OK;
}

void row_message_free(RowMessage *m)
{
    free(m->buf);
    memset(m, 0, sizeof *m);
}

/* Points the views at the header's n rows. */
static void set_views(RowMessage *m)
{
    m->digests = m->buf + sizeof(RowHeader);
    m->latents = (float *)(void *)(m->digests + (size_t)DIGEST_BYTES * m->head->n);
    unsigned char *after = (unsigned char *)(m->latents + m->per * m->head->n);
    m->image_digests = m->image_bytes ? after : NULL;
    m->images = m->image_bytes ? after + (size_t)DIGEST_BYTES * m->head->n : NULL;
}

void row_message_begin(RowMessage *m, uint64_t row0, uint64_t n)
{
    assert(n <= m->cap);
    *m->head = (RowHeader){.row0 = row0, .n = n, .stopped = 0};
    set_views(m);
}

void row_message_end(RowMessage *m, int stopped)
{
    *m->head = (RowHeader){.row0 = 0, .n = 0, .stopped = stopped != 0};
    set_views(m);
}

uint64_t row_message_size(const RowMessage *m)
{
    return row_message_bytes(m->per, m->image_bytes, m->head->n);
}

int row_message_unpack(RowMessage *m, uint64_t bytes, int sender)
{
    if (bytes < sizeof(RowHeader))
        return SOWER_FAIL(SOWER_EINTERNAL, "row message from rank %d: %llu bytes, shorter than its header",
                          sender, (unsigned long long)bytes);
    const RowHeader *h = m->head;
    if (h->n > m->cap || row_message_bytes(m->per, m->image_bytes, h->n) != bytes)
        return SOWER_FAIL(SOWER_EINTERNAL,
                          "row message from rank %d: %llu bytes for %llu rows of %zu floats "
                          "(expected %llu, at most %llu rows)",
                          sender, (unsigned long long)bytes, (unsigned long long)h->n, m->per,
                          (unsigned long long)row_message_bytes(m->per, m->image_bytes, h->n), (unsigned long long)m->cap);
    set_views(m);
    return SOWER_OK;
}

int row_message_send(const RowMessage *m, int dest, int tag)
{
    /* The size fits an int: row_message_init checked it for cap rows, and n <= cap. */
    SOWER_MPI(MPI_Send(m->buf, (int)row_message_size(m), MPI_BYTE, dest, tag, MPI_COMM_WORLD));
    return SOWER_OK;
}

int row_message_recv(RowMessage *m, int source, int tag, int *sender)
{
    MPI_Status st;
    int bytes = 0;
    SOWER_MPI(
        MPI_Recv(m->buf, (int)row_message_bytes(m->per, m->image_bytes, m->cap), MPI_BYTE, source, tag, MPI_COMM_WORLD, &st));
    SOWER_MPI(MPI_Get_count(&st, MPI_BYTE, &bytes));
    *sender = st.MPI_SOURCE;
    SOWER_TRY(row_message_unpack(m, (uint64_t)bytes, st.MPI_SOURCE));
    return SOWER_OK;
}
