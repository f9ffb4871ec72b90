/* provenance.c: see provenance.h. */
#include "provenance.h"

#include <stdio.h>

void provenance_of(const Job *job, const Model *model, Provenance *p)
{
    digest_hex(job->text_sha256, p->manifest_sha256);
    digest_hex(model->weights_sha256, p->weights_sha256);
    snprintf(p->pipeline, sizeof p->pipeline, "scheduler=%s steps=%d eta=%.9g", scheduler_kind_name(job->scheduler),
             job->steps, job->eta);
    p->generator = rng_kernel_name(job->generator);
    p->model_config = model->unet_config_text;
    p->scheduler_config = model->scheduler_config_text;
}
