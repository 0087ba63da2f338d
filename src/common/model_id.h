/*
 * The one limit on model ids, shared by every part that handles them.
 */
#ifndef MLS_MODEL_ID_H
#define MLS_MODEL_ID_H

/* The longest model id, in bytes. An input message naming a longer one is
 * dead-lettered (decoder), a repository directory with a longer name is
 * skipped (registry), and a payload carrying one is refused by the gateway:
 * one limit, so every id the engine scores under reaches its subscribers. */
#define MLS_MODEL_ID_MAX 128

#endif
