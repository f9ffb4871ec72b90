/* backend.c: what every backend shares (backend.h). */
#include "backend.h"

#include <string.h>

void compute_backend_close(ComputeBackend *be)
{
    if (be->close)
        be->close(be->ctx);
    memset(be, 0, sizeof *be);
}
