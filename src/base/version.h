/* version.h: which sower made a file: the release and the source revision (`git describe` at
 * build time, "-dirty" when the tree had changes). Generated into version.c from version.c.in. */
#ifndef SOWER_VERSION_H
#define SOWER_VERSION_H

/* "sower VERSION (revision REV)" and build facts, for --version and provenance. */
const char *sower_version(void);
const char *sower_revision(void);

#endif /* SOWER_VERSION_H */
