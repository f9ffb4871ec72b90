/* scheduler_registry.c: the one list of scheduler classes. Adding a scheduler: its file in
 * schedulers/ (a SchedulerClass named scheduler_NAME) and its NAME in SCHEDULER_CLASSES, in the
 * order kinds are numbered (SCHED_DDIM, SCHED_DDPM first; never reorder: kinds are stable). */
#include <stdio.h>
#include <string.h>

#include "scheduler.h"

#define SCHEDULER_CLASSES(X)                                                                                   \
    X(ddim) X(ddpm) X(ddim_parallel) X(pndm) X(euler) X(euler_a) X(dpm_multistep) X(dpm_multistep_sde) X(unipc)  \
    X(heun) X(lms) X(kdpm2) X(kdpm2_a) X(dpm_singlestep) X(dpm_singlestep_sde) X(deis) X(dpm_sde)

#define DECLARE(name) extern const SchedulerClass scheduler_##name;
SCHEDULER_CLASSES(DECLARE)
#undef DECLARE

#define ENTRY(name) &scheduler_##name,
static const SchedulerClass *const registry[] = {SCHEDULER_CLASSES(ENTRY)};
#undef ENTRY

enum { N_CLASSES = sizeof registry / sizeof registry[0] };
_Static_assert((int)N_CLASSES <= (int)SCHEDULER_MAX_KINDS, "raise SCHEDULER_MAX_KINDS: callers size name lists by it");

int scheduler_kind_count(void) { return N_CLASSES; }

const SchedulerClass *scheduler_class(SchedulerKind k) { return registry[k]; }

const char *scheduler_kind_name(SchedulerKind k) { return registry[k]->name; }

const char *scheduler_class_name(SchedulerKind k) { return registry[k]->class_name; }

const char *scheduler_names(int classes)
{
    static char names[2][512];
    char *out = names[classes != 0];
    if (!out[0])
        for (int k = 0; k < N_CLASSES; k++) {
            size_t used = strlen(out);
            snprintf(out + used, sizeof names[0] - used, "%s%s", k ? ", " : "",
                     classes ? registry[k]->class_name : registry[k]->name);
        }
    return out;
}

int scheduler_runs_key(SchedulerKind kind, ConfigKey key)
{
    const SchedulerClass *c = registry[kind];
    return (c->config_keys & SCHED_KEY(key)) && !(c->failing_keys & SCHED_KEY(key));
}

const char *scheduler_names_taking(ConfigKey key)
{
    static char names[KEY_COUNT][256];
    char *out = names[key];
    if (!out[0]) {
        int count = 0, seen = 0;
        for (int k = 0; k < N_CLASSES; k++) count += scheduler_runs_key(k, key);
        for (int k = 0; k < N_CLASSES; k++) {
            if (!scheduler_runs_key(k, key)) continue;
            size_t used = strlen(out);
            seen++;
            snprintf(out + used, sizeof names[0] - used, "%s%s", seen == 1 ? "" : seen == count ? " and " : ", ",
                     registry[k]->name);
        }
    }
    return out;
}

int scheduler_kind_parse(const char *name, SchedulerKind *k)
{
    for (int i = 0; name && i < N_CLASSES; i++)
        if (strcmp(name, registry[i]->name) == 0) {
            *k = i;
            return SOWER_OK;
        }
    return SOWER_FAIL(SOWER_EINPUT, "scheduler: expected one of %s, found \"%s\"", scheduler_names(0), name ? name : "");
}

int scheduler_kind_of_class(const char *class_name, SchedulerKind *k)
{
    for (int i = 0; class_name && i < N_CLASSES; i++)
        if (strcmp(class_name, registry[i]->class_name) == 0) {
            *k = i;
            return SOWER_OK;
        }
    return SOWER_FAIL(SOWER_EINPUT, "scheduler class \"%s\": expected one of %s", class_name ? class_name : "",
                      scheduler_names(1));
}
