/* cap_after_mpi_init.c: an LD_PRELOAD shim for test_out_of_memory.py. Through MPI's profiling interface its
 * MPI_Init calls PMPI_Init and, once that returned, caps the address space (RLIMIT_AS) at what the process
 * maps then (VmSize) plus SOWER_TEST_HEADROOM_KIB: the cap leaves sower that much, whatever Open MPI took
 * on this machine (about 245 MB on a 2-CPU Xeon; it depends on the topology and the components found).
 *
 * Why: the test caps `sower run` to see sower's own allocations fail (exit 3, "out of memory", no lock left).
 * Capped from the start, Open MPI 4.1's own start fails first under some caps, outside sower: SIGSEGV in
 * mca_base_var_register, a double free, "out of dynamic memory in opal_show_help_yylex()", each at random
 * between runs at one cap (about 240 MB on a 2-CPU Xeon), so a ladder of caps failed on chance alone. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

/* The address space mapped now, in KiB (/proc/self/status VmSize); 0 if unread. */
static unsigned long long mapped_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

int MPI_Init(int *argc, char ***argv)
{
    const int status = PMPI_Init(argc, argv);
    const char *headroom = getenv("SOWER_TEST_HEADROOM_KIB");
    if (status == MPI_SUCCESS && headroom && *headroom) {
        const unsigned long long now = mapped_kib();
        const rlim_t bytes = (rlim_t)(now + strtoull(headroom, NULL, 10)) * 1024;
        const struct rlimit cap = {bytes, bytes};
        if (now == 0 || setrlimit(RLIMIT_AS, &cap) != 0) abort(); /* the test would measure nothing: say so */
    }
    return status;
}
