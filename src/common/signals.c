#include "common/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

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

static void on_deadline(int sig)
{
        static const char msg[] =
                "mlstream: shutdown deadline passed, exiting now; Kafka "
                "redelivers what was not committed\n";
        (void)sig;
        /* write(2) and _exit(2) are all a signal handler may call here */
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
                _exit(1);
        _exit(1);
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
