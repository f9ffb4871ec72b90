/* config_file.h: the one reader of configuration text from disk (job manifests, model and
 * scheduler config.json files), so that every such file fails to read with the same wording:
 * "PATH: cannot read the WHAT: REASON". Parsing stays with each format's owner. */
#ifndef SOWER_CONFIG_FILE_H
#define SOWER_CONFIG_FILE_H

#include <stddef.h>

#include "err.h"

/* Reads the file at path, at most max_bytes, into *text (new, NUL-terminated, caller frees; *bytes
 * excludes the NUL). what names the file's role ("job manifest", "UNet config"). A missing, unreadable
 * or oversized file fails with bad_input_status (the caller's code for bad input, e.g. SOWER_EMANIFEST);
 * out of memory and read errors stay runtime failures (SOWER_ENOMEM, SOWER_EIO). */
int config_file_read(const char *path, const char *what, size_t max_bytes, int bad_input_status, char **text,
                     size_t *bytes) SOWER_MUST_CHECK;

#endif /* SOWER_CONFIG_FILE_H */
