/*
 * The gateway's GraphQL resolvers: Query.mlStreamingStatus and
 * Query.mlStreamingModels, answered from the monitor. The request context
 * is the caller (struct mls_principal, NULL without authentication); a
 * tenant-scoped caller sees only its tenants' data.
 *
 * Threads: the loop thread (the executor runs resolvers there).
 */
#include <stdio.h>

#include "gateway/gateway_int.h"

/* Query.mlStreamingStatus(modelId): the monitor's window for one model. */
static json_t *resolve_status(void *opaque, void *request_ctx,
                              const char *field, json_t *args, char *errstr,
                              size_t errstr_size)
{
        mls_gateway_t *g = opaque;
        const struct mls_principal *who = request_ctx;
        const char *model = json_string_value(json_object_get(args, "modelId"));
        json_t *v;

        (void)field;
        if (!model) {
                snprintf(errstr, errstr_size, "modelId is required");
                return NULL;
        }
        mls_monitor_expire(g->monitor, mls_clock_wall_ms());
        /* a tenant-scoped caller sees its own tenants' latencies only */
        v = mls_monitor_status(g->monitor, model, who ? who->tenants : NULL);
        if (!v)
                snprintf(errstr, errstr_size, "out of memory");
        return v;
}

/* Query.mlStreamingModels: the models the monitor tracks, sorted. The
 * sorted list is kept by the monitor between changes, so aliases of this
 * field share one array; a tenant-scoped caller gets the visible subset
 * (O(models)). Loop thread. */
static json_t *resolve_models(void *opaque, void *request_ctx,
                              const char *field, json_t *args, char *errstr,
                              size_t errstr_size)
{
        mls_gateway_t *g = opaque;
        const struct mls_principal *who = request_ctx;
        const mls_tenants_t *only = who ? who->tenants : NULL;
        json_t *ids, *v, *out;
        size_t i;

        (void)field;
        (void)args;
        mls_monitor_expire(g->monitor, mls_clock_wall_ms());
        ids = mls_monitor_model_ids(g->monitor);
        if (!ids || !only)
                goto done;
        out = json_array();
        json_array_foreach(ids, i, v)
        {
                if (out &&
                    mls_monitor_visible(g->monitor, json_string_value(v), only))
                        json_array_append(out, v);
        }
        json_decref(ids);
        ids = out;
done:
        if (!ids)
                snprintf(errstr, errstr_size, "out of memory");
        return ids;
}

int mls__gw_resolvers_install(mls_gateway_t *g, mls_gql_schema_t *schema,
                              char *errstr, size_t errstr_size)
{
        if (mls_gql_schema_set_resolver(schema, "Query", "mlStreamingStatus",
                                        resolve_status, g, errstr,
                                        errstr_size) < 0 ||
            mls_gql_schema_set_resolver(schema, "Query", "mlStreamingModels",
                                        resolve_models, g, errstr,
                                        errstr_size) < 0)
                return -1;
        return 0;
}
