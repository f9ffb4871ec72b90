/* fuzz_sample_record.c: the record `sower sample` writes beside its array (OUT.npy.json), as `sower export
 * OUT.npy` reads it (sample_record_parse), against an array of shape (2, 4, 8, 8). A record either parses,
 * describing that array completely (one seed and one row digest per row, a model, a known scheduler and
 * generator, a prompt exactly when the rows are Stable Diffusion's), or fails with exit code 2 and a
 * message naming the record. */
#include "fuzz.h"
#include "sample_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char path[] = "fuzz/out.npy.json";
    static const int64_t shape[4] = {2, 4, 8, 8};
    SampleRecord r;
    const int status = sample_record_parse(&r, path, data, size, "fuzz/out.npy", shape, 4);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, path);
        return 0;
    }
    const Job *job = &r.job;
    FUZZ_ASSERT(job->n_list == 2 && job->n_seeds == 2 && job->n_rows == 2 && job->list && r.row_sha256,
                "an accepted record without a seed and a digest per row");
    FUZZ_ASSERT(job->model_path && r.backend && strlen(r.weights_hex) == 64 && job->steps >= 1,
                "an accepted record without its model, backend or steps");
    FUZZ_ASSERT((r.rows_are == SAMPLE_ROWS_SAMPLES) == (job->n_prompts == 0) &&
                    (job->n_prompts == 0 || (job->prompts[0] && job->negative_prompts[0])),
                "prompts that do not fit what the rows are");
    FUZZ_ASSERT((r.rows_are == SAMPLE_ROWS_IMAGES) == (strlen(r.vae_hex) == 64), "a VAE digest that does not fit");
    FUZZ_ASSERT(strlen(r.record_hex) == 64, "no digest of the record");
    (void)scheduler_kind_name(job->scheduler);
    sample_record_free(&r);
    return 0;
}
