/* regular_file.h: opening a file only if it is a regular one. A plain open() of a FIFO blocks until
 * a writer appears (a hang, not an error) and a device may never end; every reader of user-named
 * paths (models, tokenizers, manifests, outputs) asks here first, so such a path is refused by name. */
#ifndef SOWER_REGULAR_FILE_H
#define SOWER_REGULAR_FILE_H

#include <stdio.h>

#include "err.h"

/* Opens path read-only (O_CLOEXEC) without blocking; the descriptor if it is a regular file (links
 * followed), else -1 with errno: the open's own (ENOENT, EACCES, ...), EISDIR for a directory, or
 * ENOTSUP for anything else (FIFO, socket, device). The descriptor blocks as usual afterwards. */
int regular_file_open(const char *path);

/* fopen(path, "rb") through regular_file_open: NULL with errno as there. */
FILE *regular_file_fopen(const char *path);

/* What regular_file_open's errno means for a user: "it is a directory", "it is not a regular file
 * (a FIFO, socket or device)", else strerror(err). */
const char *regular_file_why(int err);

/* Reads fp to its end into a new buffer of (n + 1,) bytes, the last one '\0' (caller frees): sized by
 * the file, not by max_bytes, so a cap of 1 GiB costs nothing for a 1 KiB file. Returns 0, EFBIG when
 * the file holds more than max_bytes, ENOMEM or EIO; *data is NULL unless 0. */
int regular_file_read_stream(FILE *fp, size_t max_bytes, unsigned char **data, size_t *n);

/* 1 when path is an existing regular file (links followed), else 0; never opens it. */
int regular_file_exists(const char *path);

/* 1 when anything is at path (a file, a folder, a FIFO, a dangling or looping link): where a file is
 * expected, its reader then says what is wrong with it, rather than "no such file". */
int path_present(const char *path);

/* 1 when a and b name one file: the same inode when both exist, else the same name in the same folder
 * (folders compared through realpath: "./x", "d/../x" and a link to the folder all name "x"). */
int path_same_file(const char *a, const char *b);

/* Whether path's folder (the part before its last '/', "." when none) exists as a directory: 1, else
 * 0 with why (of why_size bytes) saying "does not exist" or "is not a folder". */
int path_folder_exists(const char *path, char *why, size_t why_size);

/* 1 when path is an existing file of the folder dir: dir's files and those of its folders, two levels
 * down (a pipeline's are one down), links followed, folders' too: a Hugging Face cache folder links each
 * file to its blob, and a model folder may link a subfolder it shares with another (unet ->
 * ../shared/unet). The depth bounds a loop of links. */
int folder_holds_file(const char *dir, const char *path);

/* A run's output (`what`: "output", "output.path") must be able to become a file: SOWER_EPATH when path is
 * empty, a directory or named as one ("out/"), or an existing device, FIFO or socket (the final rename
 * would replace it). run checks it before any folder is made or row rendered, check says the same. */
int output_path_check(const char *path, const char *what) SOWER_MUST_CHECK;

#endif /* SOWER_REGULAR_FILE_H */
