/* Subcommands other than those in main.c. Each returns the exit status. */
#ifndef MLS_CLI_H
#define MLS_CLI_H

#include <stdio.h>

/*
 * The git revision of this build (`git describe --always --dirty`, or
 * "unknown" outside a git checkout), written at build time into
 * <build>/git_revision.c by cmake/gitversion.cmake.
 */
extern const char mls_git_revision[];

/* `mlstream version`: this build and its libraries, one per line. Opens the
 * framework plugins. Returns the exit status. Main thread. */
int mls_cli_version(FILE *out);

/* `mlstream config --man`: the mlstream(1) page in roff, its options
 * written from the configuration table. Returns the exit status. */
int mls_cli_manpage(FILE *out);

#endif
