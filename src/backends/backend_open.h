/* backend_open.h: the one place that knows every backend: opens the one a manifest or option names
 * (cpu/ or gpu/) on the device this rank should use (placement.h). */
#ifndef SOWER_BACKEND_OPEN_H
#define SOWER_BACKEND_OPEN_H

#include "backend.h"

/* The backend `kind` with the precision asked for (tf32, bf16, fp16: cuda only, else SOWER_EINPUT). */
int compute_backend_open(ComputeBackend *be, Backend kind, Precision precision, const UNet *u) SOWER_MUST_CHECK;
/* The device compute_backend_open would use for `kind` cuda: SOWER_EINPUT when none is visible. */
int compute_backend_cuda_device(int *device) SOWER_MUST_CHECK;

#endif /* SOWER_BACKEND_OPEN_H */
