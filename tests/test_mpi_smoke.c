/* test_mpi_smoke.c: the MPI stack and the test launcher work: every rank sees the same world
 * size that the launcher asked for (argv[1]) and a broadcast from rank 0 arrives intact. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int expected = argc > 1 ? atoi(argv[1]) : -1;
    unsigned long long word = rank == 0 ? 0x5EED5EED5EED5EEDull : 0;
    MPI_Bcast(&word, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    int ok = size == expected && word == 0x5EED5EED5EED5EEDull;
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (!ok)
        fprintf(stderr, "rank %d: world size %d (expected %d), broadcast word %llx\n", rank, size, expected, word);
    if (rank == 0)
        printf("test_mpi_smoke: %d ranks, %s\n", size, all_ok ? "ok" : "FAILED");
    MPI_Finalize();
    return all_ok ? 0 : 1;
}
