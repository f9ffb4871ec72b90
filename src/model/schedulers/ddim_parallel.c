/* ddim_parallel.c: diffusers 0.31's DDIMParallelScheduler (scheduling_ddim_parallel.py), as a folder's
 * scheduler_config.json may name it: DDIMScheduler's __init__ keys and defaults, and for one sample
 * DDIM's step exactly (its batch_step_no_noise serves ParaDiGMS-style parallel sampling, which sower
 * does not run). tests/test_scheduler.c checks it against the real class. */
#include "schedulers/schedulers.h"

const SchedulerClass scheduler_ddim_parallel = {
    .name = "ddim-parallel",
    .class_name = "DDIMParallelScheduler",
    .config_keys = SCHED_KEYS_DDIM,
    .takes_eta = 1,
    .divides_by_noise = 1,
    .final_alpha_cumprod = scheduler_ddim_final_alpha_cumprod,
    .coefficients = scheduler_ddim_coefficients,
};
