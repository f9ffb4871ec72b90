/* job.c: what the rest of sower asks of a loaded Job (manifest.h): its rows and seeds, slices,
 * seed collisions, the normalised listing `sower check` prints. Parsing stays in manifest.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest.h"
#include "model.h"

void job_free(Job *job)
{
    free(job->manifest_path);
    free(job->text);
    free(job->model_path);
    free(job->ranges);
    free(job->range_marks);
    free(job->list);
    free(job->list_marks);
    free(job->output_path);
    for (size_t i = 0; i < job->n_prompts; i++) {
        free(job->prompts[i]);
        free(job->negative_prompts ? job->negative_prompts[i] : NULL);
    }
    free(job->prompts);
    free(job->negative_prompts);
    free(job->prompt_marks);
    free(job->prompts_file);
    free(job->prompts_file_negative);
    memset(job, 0, sizeof *job);
}

uint64_t job_prompt_at(const Job *job, uint64_t row) { return job->n_prompts ? row / job->n_seeds : 0; }

uint64_t job_seed_at(const Job *job, uint64_t row)
{
    row %= job->n_seeds;
    for (int i = 0; i < job->n_ranges; i++) {
        if (row < job->ranges[i].count)
            return job->ranges[i].start + row;
        row -= job->ranges[i].count;
    }
    return job->list[row];
}

uint64_t job_verify_rows(const Job *job)
{
    uint64_t n = job->verify_count;
    if (job->verify_by_fraction)
        n = (uint64_t)ceil(job->verify_fraction * (double)job->n_rows);
    return n < job->n_rows ? n : job->n_rows;
}

void job_slice_bounds(const Job *job, int k, int n, uint64_t *lo, uint64_t *hi)
{
    uint64_t base = job->n_rows / (uint64_t)n, extra = job->n_rows % (uint64_t)n, uk = (uint64_t)k;
    *lo = uk * base + (uk < extra ? uk : extra);
    *hi = *lo + base + (uk < extra);
}

/* Seeds collide when their low 32 bits agree. Each range covers an arc of the 2^32 circle (split
 * in two where it wraps); sorted arcs that overlap give a colliding pair. */
typedef struct {
    uint64_t lo, hi;   /* [lo, hi] of the 32-bit key, hi <= 2^32 - 1 */
    uint64_t seed_lo;  /* the seed whose key is lo */
} KeyArc;

static int cmp_arc(const void *a, const void *b)
{
    const KeyArc *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void job_warn_seed_collisions(const Job *job, FILE *stream)
{
    size_t n = 2 * (size_t)job->n_ranges + job->n_list, k = 0;
    KeyArc *arcs = malloc(sizeof *arcs * (n + 1));
    if (!arcs)
        return;
    const uint64_t ring = UINT64_C(1) << 32;
    for (int i = 0; i < job->n_ranges; i++) {
        const SeedRange *r = &job->ranges[i];
        if (r->count > ring) {
            fprintf(stream, "sower: warning: %s: seeds %llu and %llu give identical noise (torch seeds with the low 32 "
                            "bits only)\n", job->manifest_path, (unsigned long long)r->start,
                    (unsigned long long)(r->start + ring));
            free(arcs);
            return;
        }
        uint64_t lo = r->start & (ring - 1), end = lo + r->count - 1;
        if (end < ring) {
            arcs[k++] = (KeyArc){lo, end, r->start};
        } else {
            arcs[k++] = (KeyArc){lo, ring - 1, r->start};
            arcs[k++] = (KeyArc){0, end - ring, r->start + (ring - lo)};
        }
    }
    for (size_t i = 0; i < job->n_list; i++)
        arcs[k++] = (KeyArc){job->list[i] & (ring - 1), job->list[i] & (ring - 1), job->list[i]};
    qsort(arcs, k, sizeof *arcs, cmp_arc);
    for (size_t i = 1; i < k; i++)
        if (arcs[i].lo <= arcs[i - 1].hi) {
            uint64_t other = arcs[i - 1].seed_lo + (arcs[i].lo - arcs[i - 1].lo);
            fprintf(stream, "sower: warning: %s: seeds %llu and %llu give identical noise (torch seeds with the low 32 "
                            "bits only)\n", job->manifest_path, (unsigned long long)other,
                    (unsigned long long)arcs[i].seed_lo);
            break;
        }
    free(arcs);
}


/* A YAML double-quoted string's inside: backslash, quote and control characters escaped. */
static void write_escaped(FILE *s, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(s, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) /* YAML streams may not hold them raw */
            fprintf(s, "\\x%02x", *p);
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* UTF-8 of U+0080..U+009F, likewise */
            fprintf(s, "\\u00%02x", *++p);
        else
            fputc(*p, s);
    }
}

/* A path as a double-quoted YAML scalar, absolute: the printed job reads back the same from anywhere. */
static void write_path(FILE *s, const char *path)
{
    fputc('"', s);
    char *cwd = path[0] == '/' ? NULL : getcwd(NULL, 0);
    if (cwd) {
        write_escaped(s, cwd);
        if (strcmp(cwd, "/") != 0) fputc('/', s);
        free(cwd);
    }
    write_escaped(s, path);
    fputc('"', s);
}

/* The shortest text that reads back as v ("%g" would print 0.123456789 as 0.123457: another job), with a
 * point before any exponent: YAML 1.1 readers (PyYAML) take 1e-320 for a string, 1.0e-320 for a number. */
const char *job_number_text(double v, char text[static 32])
{
    char shortest[32]; /* a local buffer: GCC's UBSan build takes text for a possible null destination */
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(shortest, sizeof shortest, "%.*g", digits, v);
        if (strtod(shortest, NULL) == v)
            break;
    }
    memcpy(text, shortest, sizeof shortest);
    char *e = strchr(text, 'e');
    if (e && !memchr(text, '.', (size_t)(e - text)) && strlen(text) + 2 < 32) {
        memmove(e + 2, e, strlen(e) + 1);
        memcpy(e, ".0", 2);
    }
    return text;
}

void job_print(const Job *job, FILE *s)
{
    char number[32];
    fprintf(s, "sower: 1\nname: \"");
    write_escaped(s, job->name); /* quoted: a name such as "2024" stays a string */
    fprintf(s, "\"\nmodel:\n  path: ");
    write_path(s, job->model_path);
    fprintf(s, "\n");
    if (job->model_digest_pinned) {
        char hex[DIGEST_HEX_CHARS];
        digest_hex(job->model_digest, hex);
        fprintf(s, "  digest: \"sha256:%s\"\n", hex);
    }
    fprintf(s, "pipeline:\n  scheduler: %s\n  steps: %d\n  eta: %s\n  batch: %d\n  backend: %s\n",
            scheduler_kind_name(job->scheduler), job->steps, job_number_text(job->eta, number), job->batch,
            job->backend == BACKEND_CPU ? "cpu" : "cuda");
    fprintf(s, "  karras: %s\n", job->sigmas == SIGMAS_KARRAS ? "true" : "false");
    if (sigma_schedule_named(job->sigmas)) /* absent otherwise: earlier jobs' keys stand */
        fprintf(s, "  sigmas: %s\n", sigma_schedule_name(job->sigmas));
    fprintf(s, "  precision: %s\n", precision_name(job->precision));
    if (job->n_prompts) {
        fprintf(s, "  guidance: %s\n", job_number_text(job->guidance, number));
        if (job->guidance_rescale > 0)
            fprintf(s, "  guidance_rescale: %s\n", job_number_text(job->guidance_rescale, number));
        if (job->height)
            fprintf(s, "  height: %d\n  width: %d\n", job->height, job->width);
        else
            fprintf(s, "  # height, width: the model's sample_size x its VAE scale factor\n");
        fprintf(s, "  clip_skip: %d\n", job->clip_skip);
        fprintf(s, "  decode: %s\n", job->decode ? "true" : "false");
    }
    if (job->threads)
        fprintf(s, "  threads: %d\n", job->threads);
    else
        fprintf(s, "  # threads: the CPUs the rank may use, less those other work keeps busy\n");
    fprintf(s, "generator: %s\n", rng_kernel_name(job->generator));
    if (job->n_listed_prompts) {
        fprintf(s, "prompts:  # %zu in all; rows are every (prompt, seed) pair, prompt-major\n", job->n_prompts);
        for (size_t i = 0; i < job->n_listed_prompts; i++) {
            fprintf(s, "  - prompt: \"");
            write_escaped(s, job->prompts[i]);
            fprintf(s, "\"\n    negative_prompt: \"");
            write_escaped(s, job->negative_prompts[i]);
            fprintf(s, "\"\n");
        }
    }
    if (job->prompts_file) {
        fprintf(s, "prompts_file:  # %zu prompts after the list's %zu, one per line\n  path: ",
                job->n_prompts - job->n_listed_prompts, job->n_listed_prompts);
        write_path(s, job->prompts_file);
        fprintf(s, "\n  negative_prompt: \"");
        write_escaped(s, job->prompts_file_negative);
        fprintf(s, "\"\n");
    }
    fprintf(s, "seeds:\n  # %llu seed%s, %llu row%s: ranges in order, then the list\n",
            (unsigned long long)job->n_seeds, job->n_seeds == 1 ? "" : "s", (unsigned long long)job->n_rows,
            job->n_rows == 1 ? "" : "s");
    if (job->n_ranges) {
        fprintf(s, "  ranges:\n");
        for (int i = 0; i < job->n_ranges; i++)
            fprintf(s, "    - {start: %llu, count: %llu}\n", (unsigned long long)job->ranges[i].start,
                    (unsigned long long)job->ranges[i].count);
    }
    if (job->n_list) {
        fprintf(s, "  list: [");
        for (size_t i = 0; i < job->n_list; i++)
            fprintf(s, "%s%llu", i ? ", " : "", (unsigned long long)job->list[i]);
        fprintf(s, "]\n");
    }
    fprintf(s, "output:\n  path: ");
    write_path(s, job->output_path);
    fprintf(s, "\n  compression: %s\n  chunk_rows: %d\n", job->output_gzip ? "gzip" : "none", job->chunk_rows);
    if (job->verify_by_fraction)
        fprintf(s, "verify:\n  fraction: %s  # %llu row%s\n", job_number_text(job->verify_fraction, number),
                (unsigned long long)job_verify_rows(job), job_verify_rows(job) == 1 ? "" : "s");
    else
        fprintf(s, "verify:\n  count: %llu  # %llu row%s\n", (unsigned long long)job->verify_count,
                (unsigned long long)job_verify_rows(job), job_verify_rows(job) == 1 ? "" : "s");
    const SlurmSettings *u = &job->slurm;
    fprintf(s, "slurm:  # used by sower submit\n  tasks: %d\n", u->tasks);
    if (u->cpus_per_task)
        fprintf(s, "  cpus_per_task: %d\n", u->cpus_per_task);
    if (u->gpus_per_task >= 0)
        fprintf(s, "  gpus_per_task: %d\n", u->gpus_per_task);
    fprintf(s, "  slices: %d\n", u->slices);
    const char *const texts[][2] = {{"time", u->time}, {"partition", u->partition}, {"account", u->account}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (!texts[i][1][0]) continue;
        fprintf(s, "  %s: \"", texts[i][0]); /* quoted: a partition named 123 stays a string */
        write_escaped(s, texts[i][1]);
        fprintf(s, "\"\n");
    }
}

int job_check_model_kind(const Job *job, const Model *m)
{
    char where[4200];
    const UNetConfig *cfg = &m->unet.cfg;
    if (cfg->in_channels != cfg->out_channels) { /* named now, not by the first render (a partial left) */
        job_model_where(job, where, sizeof where);
        return SOWER_FAIL(SOWER_EMANIFEST, "%s: model '%s': in_channels %d != out_channels %d: not a denoiser sower can "
                                           "sample from (%s)",
                          where, job->model_path, cfg->in_channels, cfg->out_channels, m->unet_config_path);
    }
    if (!cfg->sample_height && !(m->stable_diffusion && job->height)) {
        job_model_where(job, where, sizeof where);
        return SOWER_FAIL(SOWER_EMANIFEST, "%s: model '%s': key 'sample_size' is null%s (%s)", where, job->model_path,
                          m->stable_diffusion ? " (give pipeline.height and pipeline.width)" : "", m->unet_config_path);
    }
    if (!m->stable_diffusion) {
        char why[256];
        if (unet_size_problem(cfg, cfg->sample_height, cfg->sample_width, why, sizeof why)) {
            job_model_where(job, where, sizeof where);
            return SOWER_FAIL(SOWER_EMANIFEST, "%s: model '%s': sample size %dx%d is %s (%s)", where, job->model_path,
                              cfg->sample_height, cfg->sample_width, why, m->unet_config_path);
        }
        if (!job->text_mark.line) return SOWER_OK;
        job_text_where(job, where, sizeof where);
        return SOWER_FAIL(SOWER_EMANIFEST,
                          "%s: prompts and pipeline.guidance/guidance_rescale/height/width/clip_skip/decode apply to Stable Diffusion "
                          "folders; '%s' is a %s",
                          where, job->model_path, m->pipeline_class[0] ? m->pipeline_class : "UNet2DModel folder");
    }
    job_model_where(job, where, sizeof where);
    if (!job->n_prompts)
        return SOWER_FAIL(SOWER_EMANIFEST,
                          "%s: '%s' is a StableDiffusionPipeline: the job needs prompts: (a list of {prompt, "
                          "negative_prompt}) or a prompts_file (one prompt per line)",
                          where, job->model_path);
    const int f = m->vae_scale_factor;
    if (job->height && (job->height % f || job->width % f)) {
        job_mark_where(job, job->size_mark, where, sizeof where);
        return SOWER_FAIL(SOWER_EMANIFEST,
                          "%s: pipeline.height %d and width %d must be multiples of the VAE's scale factor %d", where,
                          job->height, job->width, f);
    }
    /* Latents that do not halve evenly are fine (each odd level is upsampled back to its skip's size), but a
     * downsampling without padding needs 2 rows: checked here, not by the first forward (a partial left). */
    const int lh = job->height ? job->height / f : cfg->sample_height, lw = job->height ? job->width / f : cfg->sample_width;
    char why[256];
    if (unet_size_problem(cfg, lh, lw, why, sizeof why)) {
        job_mark_where(job, job->size_mark, where, sizeof where);
        return SOWER_FAIL(SOWER_EMANIFEST, "%s: latents of %dx%d (pipeline.height and width / %d) are %s (%s)", where, lh,
                          lw, f, why, m->unet_config_path);
    }
    return SOWER_OK;
}

int job_check_scheduler_settings(const Job *job, const char *whose)
{
    const char *path = job->manifest_path ? job->manifest_path : "(manifest)";
    const char *name = scheduler_kind_name(job->scheduler);
    if (job->eta > 0 && !scheduler_class(job->scheduler)->takes_eta)
        return SOWER_FAIL(SOWER_EMANIFEST,
                          "%s:%u:%u: key 'pipeline.eta': expected 0 with the scheduler %s (%seta is DDIM's: ddim and ddim-parallel), found %g",
                          path, job->eta_mark.line, job->eta_mark.column, name, whose, job->eta);
    if (job->sigmas != SIGMAS_CONFIG && !scheduler_runs_key(job->scheduler, sigma_schedule_key(job->sigmas))) {
        const char *key = job->sigmas_key ? job->sigmas_key : "pipeline.sigmas";
        return SOWER_FAIL(SOWER_EMANIFEST, "%s:%u:%u: key '%s': %s sigmas do not run with the scheduler %s (%s%s run them)",
                          path, job->sigmas_mark.line, job->sigmas_mark.column, key, sigma_schedule_name(job->sigmas), name,
                          whose, scheduler_names_taking(sigma_schedule_key(job->sigmas)));
    }
    return SOWER_OK;
}

int job_resolve_scheduler(Job *job, const Model *m)
{
    if (job->scheduler_given) return SOWER_OK; /* eta and sigmas were checked against it as they were read */
    int status = model_default_scheduler(m, "pipeline.scheduler", &job->scheduler);
    if (status != SOWER_OK) {
        return SOWER_FAIL(status, "%s: no pipeline.scheduler: %s", job->manifest_path ? job->manifest_path : "(manifest)",
                          sower_error_message());
    }
    return job_check_scheduler_settings(job, m->stable_diffusion
                                                 ? "the folder's own, as pipeline.scheduler is not given; "
                                                 : "the default, as pipeline.scheduler is not given; ");
}

void job_text_where(const Job *job, char *out, size_t size)
{
    snprintf(out, size, "%s:%u:%u", job->manifest_path ? job->manifest_path : "(manifest)", job->text_mark.line,
             job->text_mark.column);
}

void job_mark_where(const Job *job, Mark mark, char *out, size_t size)
{
    if (!mark.line) mark = job->text_mark;
    snprintf(out, size, "%s:%u:%u", job->manifest_path ? job->manifest_path : "(manifest)", mark.line, mark.column);
}

void job_model_where(const Job *job, char *out, size_t size)
{
    snprintf(out, size, "%s:%u:%u", job->manifest_path ? job->manifest_path : "(manifest)", job->model_mark.line,
             job->model_mark.column);
}
