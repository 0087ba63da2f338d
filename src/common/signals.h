/*
 * Process signal set-up shared by every long-running command.
 */
#ifndef MLS_SIGNALS_H
#define MLS_SIGNALS_H

/* SIGTERM, SIGINT and SIGHUP call handler; SIGPIPE is ignored, so a peer
 * that goes away shows up as EPIPE on the write instead of killing us. */
void mls_signals_install(void (*handler)(int));

#endif
