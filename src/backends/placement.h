/* placement.h: which GPU a rank uses. Under Slurm each task has SLURM_LOCALID (its index among the
 * job's tasks on its node); under mpirun, OMPI_COMM_WORLD_LOCAL_RANK. With --gpus-per-task Slurm
 * usually narrows CUDA_VISIBLE_DEVICES to the task's own GPUs, so the index wraps over what is
 * visible: local rank L on a node where V devices are visible uses device L mod V. */
#ifndef SOWER_PLACEMENT_H
#define SOWER_PLACEMENT_H

/* The rank's index on its node from the launcher's environment; -1 when none says. */
int placement_local_rank(void);
/* The device for local rank `local` (< 0: 0) among `visible` (> 0) devices. */
int placement_gpu_index(int local, int visible);

#endif /* SOWER_PLACEMENT_H */
