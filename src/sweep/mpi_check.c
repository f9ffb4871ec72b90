/* mpi_check.c: MPI return codes as sower statuses (mpi_check.h). */
#include "mpi_check.h"

#include <string.h>

int sower_mpi_status(int code, const char *call, const char *file, int line, const char *func)
{
    if (code == MPI_SUCCESS) return SOWER_OK;
    char text[MPI_MAX_ERROR_STRING] = "(no message)";
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error code %d", code);
    /* The function's name, not its arguments: "MPI_Bcast failed: MPI_ERR_TRUNCATE: ..." */
    return sower_fail(SOWER_EMPI, file, line, func, "%.*s failed: %s", (int)strcspn(call, "( "), call, text);
}

int sweep_mpi_errors_return(void)
{
    SOWER_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    return SOWER_OK;
}
