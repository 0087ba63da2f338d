#include "common/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

void mls_signals_install(void (*handler)(int))
{
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

/* the step mls_signals_stage() named last; read by the handler */
static const char *volatile stage;

static void say(const char *s)
{
        size_t n = strlen(s); /* async-signal-safe */

        if (write(STDERR_FILENO, s, n) < 0)
                _exit(1);
}

static void on_deadline(int sig)
{
        const char *what = stage;

        (void)sig;
        /* write(2), strlen(3) and _exit(2) are all a signal handler may
         * call here */
        say("mlstream: shutdown deadline passed");
        if (what) {
                say(" while ");
                say(what);
        }
        say(", exiting now; Kafka redelivers what was not committed\n");
        _exit(1);
}

void mls_signals_stage(const char *what)
{
        stage = what;
}

void mls_shutdown_step(const char *what)
{
        mls_signals_stage(what);
        mls_debug("shutdown: %s", what);
}

void mls_signals_deadline(unsigned ms)
{
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_deadline;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        alarm(ms ? (ms + 999) / 1000 : 1);
}

void mls_signals_exit_now(void)
{
        on_deadline(0);
}
