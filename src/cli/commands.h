/* commands.h: the subcommands of the sower binary. Each takes the arguments after its name and
 * returns a status; main() turns the status into the exit code. */
#ifndef SOWER_COMMANDS_H
#define SOWER_COMMANDS_H

#include "err.h"
#include "manifest.h"
#include "version.h" /* sower_version, sower_revision */

int cmd_noise(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_sample(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_info(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_check(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_run(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_verify(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_export(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_submit(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_tokenize(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_encode(int argc, char **argv) SOWER_MUST_CHECK;
int cmd_convert(int argc, char **argv) SOWER_MUST_CHECK;

/* The model a job names must load, and match its pinned digest if it has one; errors say where the
 * manifest names it (FILE:LINE:COL: model: ...); output.path must be one `sower run` takes. For check and submit. */
int check_job_model(Job *job) SOWER_MUST_CHECK;


#endif /* SOWER_COMMANDS_H */
