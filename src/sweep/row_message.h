/* row_message.h: rendered rows on their way from a rank to the writer (rank 0).
 *
 * One typed message serves the render pass (a batch of rows, TAG_ROWS) and the verification pass
 * (one re-rendered row, TAG_VERIFY). On the wire it is one contiguous block of MPI_BYTE between
 * processes of the same build on nodes of one kind (check_identities makes sure):
 *     RowHeader, digests (n, DIGEST_BYTES), latents (n, per) floats,
 *     and with images (pipeline.decode): image digests (n, DIGEST_BYTES), images (n, image_bytes)
 * Every offset follows from the header's n and the per-row sizes both ends agree on (the model's
 * C*H*W, the VAE's image bytes), and the receiver checks the byte count against the header before it
 * reads a row.
 * A message with n = 0 ends the sender's part of the render pass. */
#ifndef SOWER_ROW_MESSAGE_H
#define SOWER_ROW_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

typedef struct {
    uint64_t row0;    /* job row of the first row */
    uint64_t n;       /* rows that follow; 0: the sender's end of its part */
    uint64_t stopped; /* with n = 0: 1 when the sender stopped early (a signal, or rank 0 said so) */
} RowHeader;

typedef struct {
    size_t per;             /* floats per row: C*H*W */
    size_t image_bytes;     /* bytes of a row's image (pipeline.decode); 0: none */
    uint64_t cap;           /* rows the buffer holds */
    unsigned char *buf;     /* (row_message_bytes(per, image_bytes, cap),) the bytes sent and received */
    RowHeader *head;        /* view: buf's start */
    unsigned char *digests; /* view: (head->n, DIGEST_BYTES) */
    float *latents;         /* view: (head->n, per) */
    unsigned char *image_digests; /* view: (head->n, DIGEST_BYTES); NULL without images */
    unsigned char *images;        /* view: (head->n, image_bytes); NULL without images */
} RowMessage;

/* Bytes of a message of n rows of per floats (and image_bytes of image); UINT64_MAX when that overflows. */
uint64_t row_message_bytes(size_t per, size_t image_bytes, uint64_t n);
/* SOWER_EINPUT, naming the batch after `where` (the manifest; NULL: nothing), when a message of cap rows
 * would exceed MPI's int count. run and check ask the same. */
int row_message_fits(size_t per, size_t image_bytes, uint64_t cap, const char *where) SOWER_MUST_CHECK;
/* A buffer for up to cap rows: SOWER_EINPUT as row_message_fits, SOWER_ENOMEM when it cannot be
 * allocated. */
int row_message_init(RowMessage *m, size_t per, size_t image_bytes, uint64_t cap) SOWER_MUST_CHECK;
void row_message_free(RowMessage *m); /* safe on a zeroed RowMessage */
/* Starts a message of n <= cap rows from job row row0: the header is set, and the views point
 * where the rows' digests and latents go. */
void row_message_begin(RowMessage *m, uint64_t row0, uint64_t n);
/* The end of the sender's part (n = 0); stopped: it stopped early. */
void row_message_end(RowMessage *m, int stopped);
/* Bytes to send for the message begun (the header's n rows). */
uint64_t row_message_size(const RowMessage *m);
/* Reads a received message of `bytes` bytes in buf: checks the header against the byte count and
 * the capacity (SOWER_EINTERNAL naming the sender if not), then sets the views. */
int row_message_unpack(RowMessage *m, uint64_t bytes, int sender) SOWER_MUST_CHECK;

/* MPI: sends the message begun to rank dest; receives one from source (MPI_ANY_SOURCE allowed)
 * and unpacks it, *sender set to the rank it came from. */
int row_message_send(const RowMessage *m, int dest, int tag) SOWER_MUST_CHECK;
int row_message_recv(RowMessage *m, int source, int tag, int *sender) SOWER_MUST_CHECK;

#endif /* SOWER_ROW_MESSAGE_H */
