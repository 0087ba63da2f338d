/*
 * Subscription fan-out. Subscribers with the same (document, operation
 * name, variables but the one that gives `after`) share one group; a group
 * belongs to the model its modelId argument names. Within a group, subscribers
 * with the same tenant filter share one slice. A prediction is rendered at most
 * once per group of its model (mls_gql_sub_render() into one scratch buffer,
 * then one frame), and only when one of the group's slices may see it (its
 * metadata.tenant is in the slice's tenant set, or the slice is
 * unrestricted); that same frame is handed to every member of those
 * slices, and to no one else.
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
#include "gateway/payload.h"
#include "gateway/tenants.h"
#include "graphql/graphql.h"

struct mls_buf;
typedef struct mls_hub mls_hub_t;
struct mls_hub_group;
struct mls_hub_slice;

/* Embedded in the subscriber's own struct; the hub links it in. */
struct mls_hub_member {
        struct mls_hub_group *group; /* NULL while not joined */
        struct mls_hub_slice *slice; /* the group's slice for its tenants */
        json_t *args; /* its own coerced arguments (after: differs) */
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
/* Calls fn(opaque, model, len, 1) when a model gets its first group and
 * fn(..., 0) when its last group goes (the gateway's per-model Redis
 * subscriptions follow them). */
void mls_hub_on_models(mls_hub_t *h,
                       void (*fn)(void *opaque, const char *model, size_t len,
                                  int watched),
                       void *opaque);
/* At most max distinct models watched at once (0: no cap): a join for
 * one more is refused with an error naming GATEWAY_MAX_WATCHED_MODELS. */
void mls_hub_set_max_models(mls_hub_t *h, size_t max);
/* Calls fn for every model that has at least one group (is watched). fn
 * must not join or leave members. */
void mls_hub_foreach_model(const mls_hub_t *h,
                           void (*fn)(void *opaque, const char *model,
                                      size_t len),
                           void *opaque);
/* Frees the hub. Members still joined are detached (their group becomes
 * NULL) but not otherwise touched. */
void mls_hub_free(mls_hub_t *h);

/*
 * Joins m to the group of (text, operation_name, variables), preparing the
 * subscription from doc (a valid document for text) if the group is new,
 * and to the group's slice for tenants (NULL: every event; otherwise only
 * events whose metadata.tenant is in the set; the hub keeps its own
 * reference). variables may be NULL. Returns 0, or -1 with *errors set to a
 * new array of GraphQL errors (the caller decrefs it; NULL when memory ran
 * out) when the operation cannot be prepared (not a subscription, unknown,
 * bad variables).
 */
int mls_hub_join(mls_hub_t *h, struct mls_hub_member *m, mls_gql_doc_t *doc,
                 const char *text, size_t len, const char *operation_name,
                 json_t *variables, mls_tenants_t *tenants, json_t **errors);
/* Removes m from its group (freeing the group when it empties). A member
 * that is not joined is ignored. */
void mls_hub_leave(mls_hub_t *h, struct mls_hub_member *m);

/* Renders the prediction p (borrowed) for every group of model_id with a
 * slice that may see tenant[0..tenant_len) (NULL: the event has no tenant,
 * and only unrestricted slices see it), and delivers it to those slices'
 * members. A group renders from p's texts when its selection allows
 * (mls_gql_sub_render_text()), else from mls_payload_event(p). Returns the
 * number of deliveries. */
size_t mls_hub_publish(mls_hub_t *h, const char *model_id, const char *tenant,
                       size_t tenant_len, struct mls_payload *p);

/* Renders p (as for mls_hub_publish()) for m alone into out: returns
 * 1 when rendered, 0 when m's slice may not see tenant, -1 when the
 * rendering failed (counted) or m is not joined. For replaying history to
 * one subscriber. */
int mls_hub_render_member(mls_hub_t *h, const struct mls_hub_member *m,
                          const char *tenant, size_t tenant_len,
                          struct mls_payload *p, struct mls_buf *out);

/* The coerced arguments of m's subscription (borrowed), or NULL. */
json_t *mls_hub_member_args(const struct mls_hub_member *m);

/* The model id a member's group subscribes to, or NULL. */
const char *mls_hub_member_model(const struct mls_hub_member *m);

/* 1 if some group subscribes to model_id (O(1)). */
int mls_hub_has_model(const mls_hub_t *h, const char *model_id);

struct mls_hub_stats {
        size_t members, groups, slices, models;
        uint64_t renders, render_errors;
        uint64_t refused_models; /* joins refused by the model cap */
};
void mls_hub_stats(const mls_hub_t *h, struct mls_hub_stats *st);

#endif
