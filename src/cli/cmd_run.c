/* cmd_run.c: `sower run JOB.yaml`: its options and usage. The sweep itself (planning, the row
 * messages, the render and verification passes, the output) is the sweep layer's: sweep.h. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sweep.h"

enum { SLICES_MAX = 100000 }; /* plan.c's PLAN_SLICES_MAX */

static const char run_usage[] =
    "usage: sower run JOB.yaml [--resume | --resume-auto] [--force] [-o OUT.h5] [--batch B]\n"
    "                          [--slice K/N | --stitch N] [--status-file F]\n"
    "       mpirun -np N sower run JOB.yaml ...   (or srun --mpi=pmix)\n"
    "\n"
    "Renders every seed of the job across the MPI ranks into one HDF5 file (rows in manifest order),\n"
    "then re-renders a sample of rows on other ranks and compares the bits (exit 1 on a mismatch).\n"
    "  --resume     continue an interrupted run (OUT.h5.partial of the same job and model: comments,\n"
    "               name, threads, batch, verify and slurm may have changed, not what decides the bits):\n"
    "               rows already written are kept, the rest rendered; the result is byte-identical\n"
    "  --resume-auto  for batch scripts that may run again (requeue): resume OUT.h5.partial if there\n"
    "               is one, start if not, exit 0 at once if OUT.h5 is already finished for this job\n"
    "  --slice K/N  render only slice K (0..N-1) of the rows, into OUT.slice-K-of-N.h5 (job arrays)\n"
    "  --stitch N   copy the N finished slices into OUT.h5 (datasets identical to a one-allocation\n"
    "               run), checking each slice's provenance and row digests, then verify\n"
    "  --force      replace an existing output file\n"
    "  -o OUT.h5    write here instead of the manifest's output.path\n"
    "  --batch B    seeds per forward pass (overrides pipeline.batch; bits never depend on it)\n"
    "  --status-file F  rank 0 writes the exit code to F when the run ends (batch scripts: srun can\n"
    "               report success for a step that never started)\n"
    "SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 stop the run between denoising steps: the rows written stay\n"
    "in OUT.h5.partial, the batch in hand is dropped (exit 3); run again with --resume to finish.\n";

/* Parses "K/N" (0 <= K < N <= SLICES_MAX). */
static int parse_slice(const char *text, int *k, int *n)
{
    char *end;
    long a = strtol(text, &end, 10), b = -1;
    if (end != text && *end == '/') {
        char *end2;
        b = strtol(end + 1, &end2, 10);
        if (end2 == end + 1 || *end2)
            b = -1;
    }
    if (b < 1 || b > SLICES_MAX || a < 0 || a >= b)
        return SOWER_FAIL(SOWER_EUSAGE, "--slice: expected K/N with 0 <= K < N <= %d, found '%s'", SLICES_MAX, text);
    *k = (int)a, *n = (int)b;
    return SOWER_OK;
}

enum { RUN_FORCE, RUN_RESUME, RUN_RESUME_AUTO, RUN_SLICE, RUN_STITCH, RUN_STATUS_FILE, RUN_OUTPUT, RUN_BATCH, N_RUN_OPTS };
static const CliOption run_options[N_RUN_OPTS] = {
    [RUN_FORCE] = {"--force", NULL, 0},        [RUN_RESUME] = {"--resume", NULL, 0},
    [RUN_RESUME_AUTO] = {"--resume-auto", NULL, 0}, [RUN_SLICE] = {"--slice", NULL, 1},
    [RUN_STITCH] = {"--stitch", NULL, 1},      [RUN_STATUS_FILE] = {"--status-file", NULL, 1},
    [RUN_OUTPUT] = {"--output", "-o", 1},      [RUN_BATCH] = {"--batch", NULL, 1},
};

static int on_run_option(void *ctx, int which, const char *v)
{
    RunOptions *o = ctx;
    long n;
    switch (which) {
    case RUN_FORCE: o->force = 1; break;
    case RUN_RESUME: o->resume = 1; break;
    case RUN_RESUME_AUTO: o->resume_auto = 1; break;
    case RUN_SLICE: SOWER_TRY(parse_slice(v, &o->slice_k, &o->slice_n)); break;
    case RUN_STITCH:
        SOWER_TRY(cli_parse_int("--stitch (the slice count)", v, 1, SLICES_MAX, &n));
        o->stitch_n = (int)n;
        break;
    case RUN_STATUS_FILE: o->status_file = v; break;
    case RUN_OUTPUT: o->output = v; break;
    case RUN_BATCH:
        SOWER_TRY(cli_parse_int("--batch", v, 1, 1024, &n));
        o->batch = (int)n;
        break;
    }
    return SOWER_OK;
}

static int on_run_manifest(void *ctx, const char *arg)
{
    RunOptions *o = ctx;
    if (o->manifest)
        return cli_extra_operand("run", arg, "JOB.yaml");
    o->manifest = arg;
    return SOWER_OK;
}

static int parse_run_options(int argc, char **argv, RunOptions *o, int *help)
{
    memset(o, 0, sizeof *o);
    const CliParser parser = {"run", run_options, N_RUN_OPTS, on_run_option, on_run_manifest, o};
    SOWER_TRY(cli_parse(&parser, argc, argv, help));
    if (*help)
        return SOWER_OK;
    if (!o->manifest)
        return SOWER_FAIL(SOWER_EUSAGE, "run: JOB.yaml is required (see 'sower run --help')");
    if (o->resume && o->resume_auto)
        return SOWER_FAIL(SOWER_EUSAGE, "run: --resume and --resume-auto exclude each other");
    if (o->slice_n && o->stitch_n)
        return SOWER_FAIL(SOWER_EUSAGE, "run: --slice and --stitch exclude each other (render slices first, then "
                                        "stitch them in a job of its own)");
    return SOWER_OK;
}

int cmd_run(int argc, char **argv)
{
    RunOptions o;
    int help = 0;
    SOWER_TRY(parse_run_options(argc, argv, &o, &help));
    if (help) {
        fputs(run_usage, stdout);
        return SOWER_OK;
    }
    return sweep_run(&o);
}
