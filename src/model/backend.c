/* backend.c: what every backend shares (backend.h). */
#include "backend.h"

#include <string.h>

/* The list must name every member: a member missing from it would escape the check below. */
#define COUNT_OP(name) +1
_Static_assert(sizeof(UNetOps) == (0 UNET_OPS_FIELDS(COUNT_OP) UNET_COND_OPS_FIELDS(COUNT_OP)) * sizeof(void (*)(void)),
               "UNET_OPS_FIELDS and UNET_COND_OPS_FIELDS (backend.h) must list every UNetOps member");
#undef COUNT_OP

int backend_ops_check(const UNetOps *ops, const char *backend)
{
#define CHECK_OP(name)                                                                                             \
    if (!ops->name)                                                                                                \
        return SOWER_FAIL(SOWER_EINTERNAL, "backend %s has no operation '%s' (backend.h's UNetOps)", backend, #name);
    UNET_OPS_FIELDS(CHECK_OP)
#undef CHECK_OP
    return SOWER_OK;
}

const char *precision_name(Precision p)
{
    static const char *const names[] = PRECISION_NAMES;
    return p >= PRECISION_FP32 && p <= PRECISION_FP16 ? names[p] : "?";
}

int precision_from_name(const char *name, Precision *p)
{
    static const char *const names[] = PRECISION_NAMES;
    for (int i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0) {
            *p = (Precision)i;
            return 1;
        }
    return 0;
}

int backend_runs_conditional(const UNetOps *ops)
{
#define HAS_OP(name) &&ops->name
    return 1 UNET_COND_OPS_FIELDS(HAS_OP);
#undef HAS_OP
}

void compute_backend_close(ComputeBackend *be)
{
    if (be->close)
        be->close(be->ctx);
    memset(be, 0, sizeof *be);
}
