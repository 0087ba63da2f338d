/*
 * Subscription fan-out. Subscribers with the same (document, operation
 * name, variables) share one group; a group belongs to the model its
 * modelId argument names. A prediction is rendered once per group of its
 * model (mls_gql_sub_render() into one scratch buffer, then one frame), and
 * that same frame is handed to every member of the group.
 *
 * Threads: the gateway loop thread only. The deliver callback runs inside
 * mls_hub_publish() and must not join or leave members (the gateway only
 * queues there; closing is deferred to the connection's next writable
 * callback).
 */
#ifndef MLS_GATEWAY_HUB_H
#define MLS_GATEWAY_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gateway/frame.h"
#include "graphql/graphql.h"

typedef struct mls_hub mls_hub_t;
struct mls_hub_group;

/* Embedded in the subscriber's own struct; the hub links it in. */
struct mls_hub_member {
        struct mls_hub_group *group; /* NULL while not joined */
        struct mls_hub_member *prev, *next;
};

/* Called once per member per event with the shared rendered payload
 * ({"data":...}). The callee takes its own reference if it keeps it. */
typedef void (*mls_hub_deliver_fn)(void *opaque, struct mls_hub_member *m,
                                   struct mls_frame *payload);

/* max_render_bytes caps one rendered payload; events that render larger
 * are dropped and counted. Returns NULL when memory runs out. */
mls_hub_t *mls_hub_new(size_t max_render_bytes, mls_hub_deliver_fn deliver,
                       void *opaque);
/* Frees the hub. Members still joined are detached (their group becomes
 * NULL) but not otherwise touched. */
void mls_hub_free(mls_hub_t *h);

/*
 * Joins m to the group of (text, operation_name, variables), preparing the
 * subscription from doc (a valid document for text) if the group is new.
 * variables may be NULL. Returns 0, or -1 with *errors set to a new array
 * of GraphQL errors (the caller decrefs it; NULL when memory ran out) when
 * the operation cannot be prepared (not a subscription, unknown, bad
 * variables).
 */
int mls_hub_join(mls_hub_t *h, struct mls_hub_member *m, mls_gql_doc_t *doc,
                 const char *text, size_t len, const char *operation_name,
                 json_t *variables, json_t **errors);
/* Removes m from its group (freeing the group when it empties). A member
 * that is not joined is ignored. */
void mls_hub_leave(mls_hub_t *h, struct mls_hub_member *m);

/* Renders event (a normalised prediction, camelCase keys, borrowed) for
 * every group of model_id and delivers it. Returns the number of
 * deliveries. */
size_t mls_hub_publish(mls_hub_t *h, const char *model_id, json_t *event);

/* The model id a member's group subscribes to, or NULL. */
const char *mls_hub_member_model(const struct mls_hub_member *m);

struct mls_hub_stats {
        size_t members, groups, models;
        uint64_t renders, render_errors;
};
void mls_hub_stats(const mls_hub_t *h, struct mls_hub_stats *st);

#endif
