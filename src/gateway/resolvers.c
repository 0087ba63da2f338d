/*
 * The gateway's GraphQL resolvers: Query.mlStreamingStatus,
 * mlStreamingModels, mlStreamingOverview and mlModelComparison, answered
 * from the monitor (latencies, models seen) and the engines' heartbeats
 * (versions, rates, comparisons). The request context
 * is the caller (struct mls_principal, NULL without authentication); a
 * tenant-scoped caller sees only its tenants' data.
 *
 * Threads: the loop thread (the executor runs resolvers there).
 */
#include <stdio.h>

#include "gateway/gateway_int.h"

/* One model's MLStreamingStatus: the monitor's window (only's tenants')
 * plus what the engines report. Versions and engine counts are
 * engine-level, seen by everyone like heartbeats; the engines' rates count
 * every tenant's traffic, so a tenant-scoped caller gets null there.
 * NULL when memory runs out. */
static json_t *status(mls_gateway_t *g, const char *model,
                      const mls_tenants_t *only)
{
        json_t *v = mls_monitor_status(g->monitor, model, only);

        if (v && mls_engines_status(g->engines, model, v) < 0) {
                json_decref(v);
                return NULL;
        }
        if (v && only &&
            (json_object_set_new(v, "predictionsPerSecond", json_null()) ||
             json_object_set_new(v, "errorsPerSecond", json_null()))) {
                json_decref(v);
                return NULL;
        }
        return v;
}

static void expire(mls_gateway_t *g)
{
        int64_t now = mls_clock_wall_ms();

        mls_monitor_expire(g->monitor, now);
        mls_engines_expire(g->engines, now);
}

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
        expire(g);
        /* a tenant-scoped caller sees its own tenants' latencies only */
        v = status(g, model, who ? who->tenants : NULL);
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
        expire(g);
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

/* Query.mlStreamingOverview: the status of each model of
 * mlStreamingModels (the caller's visible ones), at most
 * MLS__GW_OVERVIEW_MAX. O(models x engines). Loop thread. */
static json_t *resolve_overview(void *opaque, void *request_ctx,
                                const char *field, json_t *args, char *errstr,
                                size_t errstr_size)
{
        mls_gateway_t *g = opaque;
        const struct mls_principal *who = request_ctx;
        const mls_tenants_t *only = who ? who->tenants : NULL;
        json_t *ids, *v, *out, *st;
        size_t i;

        (void)field;
        (void)args;
        expire(g);
        ids = mls_monitor_model_ids(g->monitor);
        out = ids ? json_array() : NULL;
        json_array_foreach(ids, i, v)
        {
                const char *id = json_string_value(v);
                if (!out || json_array_size(out) >= MLS__GW_OVERVIEW_MAX)
                        break;
                if (only && !mls_monitor_visible(g->monitor, id, only))
                        continue;
                st = status(g, id, only);
                if (!st || json_array_append_new(out, st) < 0) {
                        json_decref(out);
                        out = NULL;
                }
        }
        json_decref(ids);
        if (!out)
                snprintf(errstr, errstr_size, "out of memory");
        return out;
}

/* Query.mlModelComparison(modelId): the engines' serving-vs-shadow
 * comparisons of one model. They are computed over every tenant's inputs
 * (rows are traffic), so a tenant-scoped caller gets an empty list.
 * O(engines). Loop thread. */
static json_t *resolve_comparison(void *opaque, void *request_ctx,
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
        expire(g);
        if (who && who->tenants)
                v = json_array();
        else
                v = mls_engines_comparisons(g->engines, model);
        if (!v)
                snprintf(errstr, errstr_size, "out of memory");
        return v;
}

int mls__gw_resolvers_install(mls_gateway_t *g, mls_gql_schema_t *schema,
                              char *errstr, size_t errstr_size)
{
        if (mls_gql_schema_set_resolver(schema, "Query", "mlStreamingStatus",
                                        resolve_status, g, errstr,
                                        errstr_size) < 0 ||
            mls_gql_schema_set_resolver(schema, "Query", "mlStreamingModels",
                                        resolve_models, g, errstr,
                                        errstr_size) < 0 ||
            mls_gql_schema_set_resolver(schema, "Query", "mlStreamingOverview",
                                        resolve_overview, g, errstr,
                                        errstr_size) < 0 ||
            mls_gql_schema_set_resolver(schema, "Query", "mlModelComparison",
                                        resolve_comparison, g, errstr,
                                        errstr_size) < 0)
                return -1;
        return 0;
}
