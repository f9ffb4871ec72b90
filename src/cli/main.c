/* main.c: the sower binary. Dispatches subcommands and is the one place that decides how the
 * process ends: it prints the error a command returns and maps its status to the exit code
 * (0 ok, 1 verification mismatch, 2 bad input, 3 runtime failure). */
#include <alloca.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "commands.h"
#include "gemm.h"
#include "weight_packs.h"
#include "err.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"run", cmd_run, "render a job manifest's seeds across MPI ranks into HDF5, then verify"},
    {"submit", cmd_submit, "submit a job to Slurm (one allocation, or a job array + stitch job)"},
    {"verify", cmd_verify, "re-check a finished output: digests, provenance, bitwise re-render"},
    {"export", cmd_export, "a contact sheet PNG, or datasets (imagefolder, webdataset, .npy shards) of an output"},
    {"check", cmd_check, "validate a job manifest and its model; print the normalised job"},
    {"sample", cmd_sample, "render seeds of a diffusers model folder (UNet2DModel or Stable Diffusion) to a .npy"},
    {"convert", cmd_convert, "a single-file SD 1.x/2.x checkpoint (A1111/ComfyUI) into a diffusers folder"},
    {"info", cmd_info, "show a model folder's config, parameter count and weight digest"},
    {"noise", cmd_noise, "write torch-identical initial noise for a seed (raw little-endian values)"},
    {"tokenize", cmd_tokenize, "print a prompt's token ids, as Stable Diffusion's CLIP tokenizer gives them"},
    {"encode", cmd_encode, "write a prompt's embeddings from Stable Diffusion's CLIP text encoder (.npy)"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void print_usage(FILE *stream)
{
    fprintf(stream,
            "usage: sower [--help] [--version] COMMAND [ARGS]\n"
            "\n"
            "sower renders seed sweeps of diffusion models reproducibly: a seed's output is bitwise the\n"
            "same whatever the batch, rank or thread count, and its noise is exactly torch's.\n"
            "\n"
            "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(stream, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(stream,
            "\n"
            "'sower COMMAND --help' describes a command. Exit status: 0 ok, 1 verification mismatch,\n"
            "2 bad input (options, manifest, model files), 3 runtime failure.\n"
            "Set SOWER_DEBUG=1 to print the source trace of an error (exit 3 always prints it).\n");
}

/* The address space mapped now, in bytes (/proc/self/status VmSize); 0 if unread. */
static size_t mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kib) == 1) break;
    if (f) fclose(f);
    return (size_t)kib << 10;
}

/* Grows the main thread's stack now, by touching the far end of a 1 MiB frame (sower's deepest use is about 210
 * KiB; at most half of RLIMIT_STACK). Under an address-space cap (ulimit -v, a batch system's h_vmem) a stack that
 * had to grow later, once allocations had taken the rest of the cap, died of SIGSEGV; grown now, the allocation
 * fails instead and the command ends with "out of memory" (exit 3). The kernel never shrinks it again. A cap
 * that leaves no room even for this (the growth would be SIGSEGV here) is out of memory at once. */
static __attribute__((noinline)) int reserve_main_stack(void)
{
    size_t bytes = (size_t)1 << 20;
    struct rlimit stack, space;
    if (getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY && stack.rlim_cur / 2 < bytes)
        bytes = (size_t)stack.rlim_cur / 2;
    if (getrlimit(RLIMIT_AS, &space) == 0 && space.rlim_cur != RLIM_INFINITY) {
        const size_t mapped = mapped_bytes(), room = bytes + ((size_t)256 << 10); /* the frame, the calls below it */
        if (mapped && (size_t)space.rlim_cur < mapped + room)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory: the address-space limit (ulimit -v) of %.1f MiB leaves "
                              "%.0f KiB, and sower needs more than %.0f KiB to start",
                              (double)space.rlim_cur / (1 << 20),
                              (double)((size_t)space.rlim_cur > mapped ? (size_t)space.rlim_cur - mapped : 0) / 1024,
                              (double)room / 1024);
    }
    volatile char *far_end = alloca(bytes); /* (bytes,) untouched but for its first byte */
    far_end[0] = 0;
    return SOWER_OK;
}

static int finish(int status)
{
    if (status == SOWER_OK)
        return 0;
    int exit_code = sower_status_exit_code(status);
    const char *debug = getenv("SOWER_DEBUG");
    sower_error_print(stderr, exit_code == 3 || (debug && debug[0] && strcmp(debug, "0") != 0));
    return exit_code;
}

int main(int argc, char **argv)
{
    const int stack_reserved = reserve_main_stack();
    if (stack_reserved != SOWER_OK) return finish(stack_reserved);
    if (argc < 2) {
        print_usage(stderr);
        return sower_status_exit_code(SOWER_EUSAGE);
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("sower %s (revision %s)\n", sower_version(), sower_revision());
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0) {
            size_t pack_budget;
            int status = gemm_choose_kernels(); /* before BLIS's first use */
            if (status == SOWER_OK)
                status = weight_packs_budget(&pack_budget); /* a malformed SOWER_WEIGHT_CACHE_MB, before any work */
            return finish(status == SOWER_OK ? commands[i].run(argc - 2, argv + 2) : status);
        }
    if (name[0] == '-')
        fprintf(stderr, "sower: unknown option '%s'\n\n", name);
    else
        fprintf(stderr, "sower: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return sower_status_exit_code(SOWER_EUSAGE);
}
