/* cuda_pipeline_primitives.h (emulated): CUDA's asynchronous global -> shared copies (cp.async, as
 * __pipeline_memcpy_async / __pipeline_commit / __pipeline_wait_prior), for the host emulation
 * (cuda_runtime.h).
 *
 * As late as a GPU may make them: a copy is only queued when issued, and lands when the thread that
 * issued it waits for its group (__pipeline_wait_prior(n): every group but the n newest). A kernel
 * that reads a stage before waiting for it, or lets a stage be overwritten while it is still being
 * read, so sees stale values and fails its checks here as it could on a device. A copy still queued
 * when its block ends aborts the run (a kernel must wait for what it issued). */
#ifndef SOWER_CUDA_EMU_PIPELINE_H
#define SOWER_CUDA_EMU_PIPELINE_H

#include <stddef.h>

namespace sower_emu_rt {

void __pipeline_memcpy_async(void *dst_shared, const void *src_global, size_t size_and_align, size_t zfill = 0);
void __pipeline_commit();
void __pipeline_wait_prior(size_t prior);

} // namespace sower_emu_rt
using namespace sower_emu_rt;

#endif
