#include "common/signals.h"

#include <signal.h>
#include <string.h>

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
