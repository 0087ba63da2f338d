/*
 * Process signal set-up shared by every long-running command.
 */
#ifndef MLS_SIGNALS_H
#define MLS_SIGNALS_H

/* SIGTERM, SIGINT and SIGHUP call handler; SIGPIPE is ignored, so a peer
 * that goes away shows up as EPIPE on the write instead of killing us. */
void mls_signals_install(void (*handler)(int));

/* Ends the process with status 1 and a line on stderr once ms (rounded up
 * to whole seconds) have passed, whatever it is doing then: the hard stop
 * behind a graceful shutdown. Async-signal-safe, so a SIGTERM handler may
 * arm it. */
void mls_signals_deadline(unsigned ms);

/* The same exit, at once (a second SIGTERM/SIGINT). */
void mls_signals_exit_now(void);

/* Names the shutdown step under way ("closing the Kafka consumer"; a
 * string that lives as long as the process, or NULL): the line written when
 * the deadline passes says which step it cut short. */
void mls_signals_stage(const char *what);

/* mls_signals_stage(), and the step logged (debug) as it starts; not for
 * signal handlers, as logging is not async-signal-safe. */
void mls_shutdown_step(const char *what);

#endif
