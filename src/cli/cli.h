/* Subcommands other than those in main.c. Each returns the exit status. */
#ifndef MLS_CLI_H
#define MLS_CLI_H

int mls_cli_up(int argc, char **argv);

/* SIGTERM, SIGINT and SIGHUP call handler; SIGPIPE is ignored. */
void mls_cli_install_signals(void (*handler)(int));

#endif
