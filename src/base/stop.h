/* stop.h: a graceful stop for long runs. SIGTERM (scancel, preemption, time limit), SIGINT
 * (Ctrl-C), SIGUSR1 and SIGUSR2 (sbatch --signal) only raise a flag: the renderer stops at the next
 * denoising step, drops the batch in hand (rendered again on resume), keeps OUT.partial with the rows
 * written and exits, so `--resume` loses nothing finished. A second signal of the same kind ends the
 * process at once (the default action). */
#ifndef SOWER_STOP_H
#define SOWER_STOP_H

void stop_install(void);
/* The number of the first stop signal received, 0 if none. */
int stop_requested(void);

#endif /* SOWER_STOP_H */
