#include "gateway/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/strmap.h"

struct hub_model {
        struct mls_hub_group *groups;
        size_t ngroups;
};

/* The members of a group with one tenant filter. */
struct mls_hub_slice {
        struct mls_hub_group *group;
        struct mls_strmap_entry *key; /* entry in group->slice_map */
        mls_tenants_t *tenants;       /* NULL: every event */
        struct mls_hub_member *members;
        size_t nmembers;
        struct mls_hub_slice *prev, *next; /* in the group's list */
};

struct mls_hub_group {
        struct mls_strmap_entry *key; /* entry in h->groups */
        mls_gql_sub_t *sub;
        struct mls_strmap_entry *model_entry; /* entry in h->models */
        struct mls_strmap slice_map;          /* tenant key -> slice */
        struct mls_hub_slice *slices;
        size_t nmembers;
        struct mls_hub_group *prev, *next; /* in the model's list */
};

struct mls_hub {
        struct mls_strmap groups; /* key -> group */
        struct mls_strmap models; /* model id -> hub_model */
        struct mls_buf scratch;   /* one render at a time */
        mls_hub_deliver_fn deliver;
        void *opaque;
        void (*on_model)(void *opaque, const char *model, size_t len,
                         int watched);
        void *on_model_opaque;
        size_t nmembers, nslices;
        size_t max_models; /* 0: no cap */
        uint64_t renders, render_errors, refused_models;
};

mls_hub_t *mls_hub_new(size_t max_render_bytes, mls_hub_deliver_fn deliver,
                       void *opaque)
{
        mls_hub_t *h = calloc(1, sizeof(*h));

        if (!h)
                return NULL;
        mls_strmap_init(&h->groups);
        mls_strmap_init(&h->models);
        mls_buf_init(&h->scratch, max_render_bytes);
        h->deliver = deliver;
        h->opaque = opaque;
        return h;
}

void mls_hub_on_models(mls_hub_t *h,
                       void (*fn)(void *opaque, const char *model, size_t len,
                                  int watched),
                       void *opaque)
{
        h->on_model = fn;
        h->on_model_opaque = opaque;
}

static void model_changed(mls_hub_t *h, const struct mls_strmap_entry *e,
                          int watched)
{
        if (h->on_model)
                h->on_model(h->on_model_opaque, e->key, e->klen, watched);
}

static void free_group(void *p)
{
        struct mls_hub_group *g = p;
        struct mls_hub_slice *sl, *next;

        for (sl = g->slices; sl; sl = next) {
                next = sl->next;
                for (struct mls_hub_member *m = sl->members; m; m = m->next) {
                        m->group = NULL;
                        m->slice = NULL;
                        json_decref(m->args);
                        m->args = NULL;
                }
                mls_tenants_unref(sl->tenants);
                free(sl);
        }
        mls_strmap_free(&g->slice_map, NULL);
        mls_gql_sub_free(g->sub);
        free(g);
}

void mls_hub_free(mls_hub_t *h)
{
        if (!h)
                return;
        mls_strmap_free(&h->groups, free_group);
        mls_strmap_free(&h->models, free);
        mls_buf_free(&h->scratch);
        free(h);
}

/* key = text NUL operation NUL canonical-variables */
static int make_key(struct mls_buf *k, const char *text, size_t len,
                    const char *operation_name, json_t *variables)
{
        char *vars = NULL;

        if (variables && json_object_size(variables)) {
                vars = json_dumps(variables, JSON_COMPACT | JSON_SORT_KEYS);
                if (!vars)
                        return -1;
        }
        if (mls_buf_append(k, text, len) < 0 || mls_buf_putc(k, '\0') < 0 ||
            (operation_name && mls_buf_puts(k, operation_name) < 0) ||
            mls_buf_putc(k, '\0') < 0 || (vars && mls_buf_puts(k, vars) < 0)) {
                free(vars);
                return -1;
        }
        free(vars);
        return 0;
}

static json_t *oom_errors(void)
{
        return json_pack("[{s:s}]", "message", "out of memory");
}

/* A group for the prepared subscription sub, which it takes (and frees
 * on failure). */
static struct mls_hub_group *new_group(mls_hub_t *h, const struct mls_buf *k,
                                       mls_gql_sub_t *sub, json_t **errors)
{
        struct mls_hub_group *g;
        struct hub_model *md;
        const char *model;
        json_t *arg;

        g = calloc(1, sizeof(*g));
        if (!g) {
                mls_gql_sub_free(sub);
                *errors = oom_errors();
                return NULL;
        }
        mls_strmap_init(&g->slice_map);
        g->sub = sub;
        arg = json_object_get(mls_gql_sub_args(g->sub), "modelId");
        model = json_string_value(arg);
        if (!model) {
                *errors = json_pack("[{s:s}]", "message",
                                    "the subscription has no modelId");
                goto fail;
        }
        g->model_entry =
                mls_strmap_find(&h->models, model, json_string_length(arg));
        if (!g->model_entry && h->max_models &&
            h->models.count >= h->max_models) {
                char msg[200];
                snprintf(msg, sizeof(msg),
                         "This gateway's subscriptions watch %zu models "
                         "already, its limit (GATEWAY_MAX_WATCHED_MODELS); "
                         "subscribe to a model that is watched, or later.",
                         h->max_models);
                *errors = json_pack("[{s:s}]", "message", msg);
                h->refused_models++;
                goto fail;
        }
        if (!g->model_entry) {
                md = calloc(1, sizeof(*md));
                if (!md)
                        goto oom;
                g->model_entry = mls_strmap_put(&h->models, model,
                                                json_string_length(arg), md);
                if (!g->model_entry) {
                        free(md);
                        goto oom;
                }
        }
        g->key = mls_strmap_put(&h->groups, k->data, k->len, g);
        if (!g->key)
                goto oom_model;
        md = g->model_entry->value;
        if (md->ngroups == 0)
                model_changed(h, g->model_entry, 1);
        g->next = md->groups;
        if (md->groups)
                md->groups->prev = g;
        md->groups = g;
        md->ngroups++;
        return g;
oom_model:
        md = g->model_entry->value;
        if (!md->ngroups)
                free(mls_strmap_remove(&h->models, g->model_entry->key,
                                       g->model_entry->klen));
oom:
        *errors = oom_errors();
fail:
        mls_gql_sub_free(g->sub);
        free(g);
        return NULL;
}

/* Frees an empty group: out of its model's list (and the model when that
 * empties) and out of the group map. */
static void drop_group(mls_hub_t *h, struct mls_hub_group *g)
{
        struct hub_model *md = g->model_entry->value;

        if (g->prev)
                g->prev->next = g->next;
        else
                md->groups = g->next;
        if (g->next)
                g->next->prev = g->prev;
        if (--md->ngroups == 0) {
                model_changed(h, g->model_entry, 0);
                free(mls_strmap_remove(&h->models, g->model_entry->key,
                                       g->model_entry->klen));
        }
        mls_strmap_remove(&h->groups, g->key->key, g->key->klen);
        mls_strmap_free(&g->slice_map, NULL);
        mls_gql_sub_free(g->sub);
        free(g);
}

/* The group's slice for tenants, made when new. NULL when memory runs
 * out. */
static struct mls_hub_slice *get_slice(mls_hub_t *h, struct mls_hub_group *g,
                                       mls_tenants_t *tenants)
{
        const char *key = tenants ? tenants->key : "*";
        size_t klen = tenants ? tenants->keylen : 1;
        struct mls_hub_slice *sl = mls_strmap_get(&g->slice_map, key, klen);

        if (sl)
                return sl;
        sl = calloc(1, sizeof(*sl));
        if (!sl)
                return NULL;
        sl->key = mls_strmap_put(&g->slice_map, key, klen, sl);
        if (!sl->key) {
                free(sl);
                return NULL;
        }
        sl->group = g;
        sl->tenants = mls_tenants_ref(tenants);
        sl->next = g->slices;
        if (g->slices)
                g->slices->prev = sl;
        g->slices = sl;
        h->nslices++;
        return sl;
}

int mls_hub_join(mls_hub_t *h, struct mls_hub_member *m, mls_gql_doc_t *doc,
                 const char *text, size_t len, const char *operation_name,
                 json_t *variables, mls_tenants_t *tenants, json_t **errors)
{
        struct mls_buf k;
        struct mls_hub_group *g;
        struct mls_hub_slice *sl;
        mls_gql_sub_t *sub;
        json_t *keyvars = variables;
        const char *after;

        *errors = NULL;
        sub = mls_gql_sub_prepare(doc, operation_name, variables, errors);
        if (!sub)
                return -1;
        /* Subscribers that differ only in where they resume (the variable
         * of `after`) render every event alike: one group for them all;
         * each keeps its own arguments. */
        after = mls_gql_sub_arg_variable(sub, "after");
        if (after && json_object_get(variables, after)) {
                keyvars = json_copy(variables);
                if (keyvars)
                        json_object_del(keyvars, after);
        }
        mls_buf_init(&k, (size_t)1 << 30);
        if ((variables && !keyvars) ||
            make_key(&k, text, len, operation_name, keyvars) < 0) {
                if (keyvars != variables)
                        json_decref(keyvars);
                mls_buf_free(&k);
                mls_gql_sub_free(sub);
                *errors = oom_errors();
                return -1;
        }
        if (keyvars != variables)
                json_decref(keyvars);
        m->args = json_incref(mls_gql_sub_args(sub));
        g = mls_strmap_get(&h->groups, k.data, k.len);
        if (g)
                mls_gql_sub_free(sub);
        else
                g = new_group(h, &k, sub, errors);
        mls_buf_free(&k);
        if (!g) {
                json_decref(m->args);
                m->args = NULL;
                return -1;
        }
        sl = get_slice(h, g, tenants);
        if (!sl) {
                if (!g->nmembers)
                        drop_group(h, g);
                json_decref(m->args);
                m->args = NULL;
                *errors = oom_errors();
                return -1;
        }
        m->group = g;
        m->slice = sl;
        m->prev = NULL;
        m->next = sl->members;
        if (sl->members)
                sl->members->prev = m;
        sl->members = m;
        sl->nmembers++;
        g->nmembers++;
        h->nmembers++;
        return 0;
}

void mls_hub_leave(mls_hub_t *h, struct mls_hub_member *m)
{
        struct mls_hub_group *g = m->group;
        struct mls_hub_slice *sl = m->slice;

        if (!g)
                return;
        if (m->prev)
                m->prev->next = m->next;
        else
                sl->members = m->next;
        if (m->next)
                m->next->prev = m->prev;
        m->group = NULL;
        m->slice = NULL;
        m->prev = m->next = NULL;
        json_decref(m->args);
        m->args = NULL;
        sl->nmembers--;
        g->nmembers--;
        h->nmembers--;
        if (!sl->nmembers) {
                if (sl->prev)
                        sl->prev->next = sl->next;
                else
                        g->slices = sl->next;
                if (sl->next)
                        sl->next->prev = sl->prev;
                mls_strmap_remove(&g->slice_map, sl->key->key, sl->key->klen);
                mls_tenants_unref(sl->tenants);
                free(sl);
                h->nslices--;
        }
        if (!g->nmembers)
                drop_group(h, g);
}

/* Longest inference id (as JSON text) an EVENT_TOO_LARGE error names. */
#define TOO_LARGE_ID_MAX 1024

/*
 * The event from its texts when the selection allows, else as a tree.
 * An event whose response would pass the cap (GATEWAY_MAX_PAYLOAD_BYTES:
 * escapes can triple a payload's strings), or that memory ran out for,
 * becomes an error response naming it, with the gap it carried, so that
 * the subscriber knows what it missed. Returns 0, or 1 for that error, or
 * -1 when even that could not be written.
 */
static int render(mls_gql_sub_t *sub, struct mls_payload *p,
                  struct mls_buf *out)
{
        const struct mls_gql_text_event ev = {mls_payload_field_names, p->text,
                                              MLS_PF_COUNT};
        const struct mls_gql_text *id = &p->text[MLS_PF_INFERENCE_ID],
                                  *gap = &p->text[MLS_PF_GAP];
        json_t *tree;
        size_t at = out->len;
        int rc = mls_gql_sub_render_text(sub, &ev, out);

        if (rc == 1)
                return 0;
        if (rc == 0) {
                tree = mls_payload_event(p);
                if (tree && mls_gql_sub_render(sub, tree, out) == 0)
                        return 0;
        }
        out->len = at;
        out->overflow = 0;
        MLS_BUF_LIT(out, "{\"errors\":[{\"message\":\"The event is larger "
                         "than the gateway's outgoing message limit "
                         "(GATEWAY_MAX_PAYLOAD_BYTES).\",\"extensions\":"
                         "{\"code\":\"EVENT_TOO_LARGE\"");
        if (id->len && id->len <= TOO_LARGE_ID_MAX) {
                MLS_BUF_LIT(out, ",\"inferenceId\":");
                mls_buf_append(out, id->p, id->len);
        }
        if (gap->len) {
                MLS_BUF_LIT(out, ",\"gap\":");
                mls_buf_append(out, gap->p, gap->len);
        }
        MLS_BUF_LIT(out, "}}],\"data\":null}");
        return out->overflow ? -1 : 1;
}

size_t mls_hub_publish(mls_hub_t *h, const char *model_id, const char *tenant,
                       size_t tenant_len, struct mls_payload *p)
{
        struct hub_model *md =
                mls_strmap_get(&h->models, model_id, strlen(model_id));
        size_t n = 0;

        if (!md)
                return 0;
        for (struct mls_hub_group *g = md->groups; g; g = g->next) {
                struct mls_frame *f = NULL;
                int rc;

                for (struct mls_hub_slice *sl = g->slices; sl; sl = sl->next) {
                        if (sl->tenants &&
                            (!tenant ||
                             !mls_tenants_has(sl->tenants, tenant, tenant_len)))
                                continue;
                        if (!f) {
                                /* rendered once, for the first slice that
                                 * may see it */
                                mls_buf_reset(&h->scratch);
                                h->renders++;
                                rc = render(g->sub, p, &h->scratch);
                                if (rc != 0)
                                        h->render_errors++;
                                if (rc < 0 ||
                                    !(f = mls_frame_new(h->scratch.data,
                                                        h->scratch.len)))
                                        break;
                        }
                        for (struct mls_hub_member *m = sl->members; m;
                             m = m->next) {
                                h->deliver(h->opaque, m, f);
                                n++;
                        }
                }
                mls_frame_unref(f);
        }
        return n;
}

int mls_hub_render_member(mls_hub_t *h, const struct mls_hub_member *m,
                          const char *tenant, size_t tenant_len,
                          struct mls_payload *p, struct mls_buf *out)
{
        const struct mls_hub_slice *sl = m->slice;
        int rc;

        if (!m->group)
                return -1;
        if (sl->tenants &&
            (!tenant || !mls_tenants_has(sl->tenants, tenant, tenant_len)))
                return 0;
        h->renders++;
        rc = render(m->group->sub, p, out);
        if (rc != 0)
                h->render_errors++;
        return rc < 0 ? -1 : 1;
}

json_t *mls_hub_member_args(const struct mls_hub_member *m)
{
        return m->group ? m->args : NULL;
}

const char *mls_hub_member_model(const struct mls_hub_member *m)
{
        return m->group ? m->group->model_entry->key : NULL;
}

int mls_hub_has_model(const mls_hub_t *h, const char *model_id)
{
        return mls_strmap_get(&h->models, model_id, strlen(model_id)) != NULL;
}

void mls_hub_stats(const mls_hub_t *h, struct mls_hub_stats *st)
{
        st->members = h->nmembers;
        st->groups = h->groups.count;
        st->slices = h->nslices;
        st->models = h->models.count;
        st->renders = h->renders;
        st->render_errors = h->render_errors;
        st->refused_models = h->refused_models;
}

struct foreach_model {
        void (*fn)(void *opaque, const char *model, size_t len);
        void *opaque;
};

static void visit_model(void *opaque, struct mls_strmap_entry *e)
{
        struct foreach_model *f = opaque;
        const struct hub_model *md = e->value;

        if (md->ngroups)
                f->fn(f->opaque, e->key, e->klen);
}

void mls_hub_set_max_models(mls_hub_t *h, size_t max)
{
        h->max_models = max;
}

void mls_hub_foreach_model(const mls_hub_t *h,
                           void (*fn)(void *opaque, const char *model,
                                      size_t len),
                           void *opaque)
{
        struct foreach_model f = {fn, opaque};

        mls_strmap_foreach(&h->models, visit_model, &f);
}
