/*
 * `mlstream up`: broker, engine and gateway in one process (src/up/up.c).
 */
#ifndef MLS_UP_H
#define MLS_UP_H

/* Runs `mlstream up` with the arguments after "up"; returns the exit
 * status. */
int mls_up_main(int argc, char **argv);

#endif
