/* test_mpi_check.c: a failing MPI call becomes SOWER_EMPI with MPI's own message and the call's
 * name (src/sweep/mpi_check.h), once the sweep has set MPI_ERRORS_RETURN; one process. */
#include <stdio.h>
#include <string.h>

#include "collective.h"
#include "mpi_check.h"

static int failures;

#define EXPECT(cond, what)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, what, #cond);                       \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

/* Sends to a rank that does not exist: MPI_ERR_RANK. */
static int send_nowhere(int world)
{
    int x = 1;
    SOWER_MPI(MPI_Send(&x, 1, MPI_INT, world + 5, 0, MPI_COMM_WORLD));
    return SOWER_OK;
}

int main(void)
{
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return 1;
    int world = 0;
    EXPECT(sweep_mpi_errors_return() == SOWER_OK, "MPI_ERRORS_RETURN");
    EXPECT(SOWER_MPI_STATUS(MPI_Comm_size(MPI_COMM_WORLD, &world)) == SOWER_OK && world >= 1,
           "a call that succeeds");
    EXPECT(send_nowhere(world) == SOWER_EMPI, "a send to a missing rank is SOWER_EMPI");
    const char *msg = sower_error_message();
    EXPECT(strstr(msg, "MPI_Send failed: ") == msg, "the message names the call first");
    EXPECT(strstr(msg, "MPI_ERR_RANK") || strstr(msg, "rank"), "the message is MPI's");
    fprintf(stderr, "(expected) ");
    sower_error_print(stderr, 1);
    sower_error_clear();
    /* Broadcasts from this one rank to itself: a no-op that must succeed, in any size. */
    char bytes[100] = "unchanged";
    EXPECT(collective_bcast_bytes(bytes, sizeof bytes, 0) == SOWER_OK && !strcmp(bytes, "unchanged"),
           "bcast");
    EXPECT(collective_bcast_bytes(bytes, 0, 0) == SOWER_OK, "bcast of nothing");
    MPI_Finalize();
    printf("test_mpi_check: %d failures\n", failures);
    return failures ? 1 : 0;
}
