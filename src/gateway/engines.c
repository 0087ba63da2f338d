/*
 * The engines' model state (engines.h): a map of engines, each with a map
 * of model id -> versions, counters, rates and comparisons, plus a list
 * ordered by the last heartbeat for eviction. Gateway loop thread only.
 */
#include "gateway/engines.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

/* a heartbeat interval past this is a pause, not the engine's rhythm: the
 * largest ML_HEARTBEAT_INTERVAL_MS */
#define MAX_INTERVAL_MS 3600000
/* distinct (serving, shadow) pairs summed for one answer */
#define MAX_AGG_PAIRS 256

struct pair {
        struct mls_payload_comparison c; /* c.model_id unused */
        int64_t changed_ms;              /* when its rows last grew */
};

struct emodel {
        int has_loaded; /* else only comparisons mention the model */
        struct mls_payload_loaded l;
        int has_pred_rate, has_err_rate;
        double pred_rate, err_rate; /* per second */
        struct pair *pairs;
        unsigned npairs, cap;
};

struct engine {
        struct mls_strmap_entry *entry; /* key: engine id */
        struct engine *prev, *next;     /* most recent heartbeat first */
        int64_t last_ms, interval_ms;   /* interval 0: one heartbeat yet */
        struct mls_strmap models;       /* model id -> struct emodel */
        size_t nentries, ncmps;         /* counted in the global caps */
};

struct mls_engines {
        struct mls_strmap map; /* engine id -> struct engine */
        struct engine *head, *tail;
        unsigned max;
        size_t entries, cmps;
};

mls_engines_t *mls_engines_new(unsigned max_engines)
{
        mls_engines_t *e = calloc(1, sizeof(*e));

        if (!e)
                return NULL;
        mls_strmap_init(&e->map);
        e->max = max_engines ? max_engines : MLS_ENGINES_MAX;
        return e;
}

static void free_emodel(void *p)
{
        struct emodel *em = p;

        free(em->pairs);
        free(em);
}

static void free_engine(void *p)
{
        struct engine *en = p;

        mls_strmap_free(&en->models, free_emodel);
        free(en);
}

void mls_engines_free(mls_engines_t *e)
{
        if (!e)
                return;
        mls_strmap_free(&e->map, free_engine);
        free(e);
}

size_t mls_engines_count(const mls_engines_t *e)
{
        return e->map.count;
}

static void unlink_engine(mls_engines_t *e, struct engine *en)
{
        if (en->prev)
                en->prev->next = en->next;
        else
                e->head = en->next;
        if (en->next)
                en->next->prev = en->prev;
        else
                e->tail = en->prev;
        en->prev = en->next = NULL;
}

static void push_front(mls_engines_t *e, struct engine *en)
{
        en->next = e->head;
        if (en->next)
                en->next->prev = en;
        else
                e->tail = en;
        e->head = en;
}

static void drop(mls_engines_t *e, struct engine *en)
{
        struct mls_strmap_entry *ent = en->entry;

        unlink_engine(e, en);
        e->entries -= en->nentries;
        e->cmps -= en->ncmps;
        mls_strmap_remove(&e->map, ent->key, ent->klen);
        free_engine(en);
}

static int64_t ttl_ms(const struct engine *en)
{
        int64_t t = 3 * en->interval_ms;

        return t > MLS_ENGINES_MIN_TTL_MS ? t : MLS_ENGINES_MIN_TTL_MS;
}

static int live(const struct engine *en, int64_t now_ms)
{
        return now_ms - en->last_ms <= ttl_ms(en);
}

void mls_engines_expire(mls_engines_t *e, int64_t now_ms)
{
        struct engine *en, *prev;

        for (en = e->tail; en; en = prev) {
                prev = en->prev;
                if (!live(en, now_ms))
                        drop(e, en);
        }
}

/* The rate of a counter between two heartbeats; 0 when unknown (a
 * counter absent, or going down: the engine restarted). */
static int rate(double prev, double cur, int64_t dt_ms, double *out)
{
        if (isnan(prev) || isnan(cur) || cur < prev || dt_ms <= 0)
                return 0;
        *out = (cur - prev) * 1000.0 / (double)dt_ms;
        return 1;
}

/* The new engine state's entry for model (created when absent, within the
 * global cap). */
static struct emodel *new_entry(mls_engines_t *e, struct mls_strmap *models,
                                const char *model, size_t *entries)
{
        size_t n = strlen(model);
        struct emodel *em = mls_strmap_get(models, model, n);

        if (em)
                return em;
        if (e->entries + *entries >= MLS_ENGINES_MAX_ENTRIES)
                return NULL;
        em = calloc(1, sizeof(*em));
        if (!em)
                return NULL;
        if (!mls_strmap_put(models, model, n, em)) {
                free(em);
                return NULL;
        }
        memcpy(em->l.model_id, model, n + 1);
        em->l.canary_share = em->l.predictions = em->l.errors = NAN;
        (*entries)++;
        return em;
}

static const struct pair *find_pair(const struct emodel *em,
                                    const char *serving, const char *shadow)
{
        for (unsigned i = 0; em && i < em->npairs; i++)
                if (strcmp(em->pairs[i].c.serving, serving) == 0 &&
                    strcmp(em->pairs[i].c.shadow, shadow) == 0)
                        return &em->pairs[i];
        return NULL;
}

static int add_pair(struct emodel *em, const struct mls_payload_comparison *c,
                    const struct emodel *old, int64_t now_ms)
{
        const struct pair *before = find_pair(old, c->serving, c->shadow);
        struct pair *p;

        if (em->npairs >= MLS_ENGINES_MAX_PAIRS)
                return -1;
        if (em->npairs == em->cap) {
                unsigned cap = em->cap ? em->cap * 2 : 2;
                if (cap > MLS_ENGINES_MAX_PAIRS)
                        cap = MLS_ENGINES_MAX_PAIRS;
                p = realloc(em->pairs, cap * sizeof(*p));
                if (!p)
                        return -1;
                em->pairs = p;
                em->cap = cap;
        }
        p = &em->pairs[em->npairs++];
        p->c = *c;
        p->changed_ms = before && !(c->rows > before->c.rows)
                                ? before->changed_ms
                                : now_ms;
        return 0;
}

unsigned mls_engines_heartbeat(mls_engines_t *e, const struct mls_payload *hb,
                               int64_t now_ms)
{
        size_t klen = strlen(hb->engine_id), entries = 0, cmps = 0;
        struct engine *en;
        struct mls_strmap models;
        unsigned dropped = 0;

        if (hb->kind != MLS_PAYLOAD_HEARTBEAT || !klen)
                return 0;
        en = mls_strmap_get(&e->map, hb->engine_id, klen);
        if (!en) {
                if (!hb->has_loaded && !hb->has_comparisons)
                        return 0; /* an old engine: nothing to keep */
                while (e->map.count >= e->max && e->tail)
                        drop(e, e->tail);
                en = calloc(1, sizeof(*en));
                if (!en)
                        return (unsigned)(hb->nloaded + hb->ncomparisons);
                mls_strmap_init(&en->models);
                en->entry = mls_strmap_put(&e->map, hb->engine_id, klen, en);
                if (!en->entry) {
                        free(en);
                        return (unsigned)(hb->nloaded + hb->ncomparisons);
                }
                push_front(e, en);
        } else {
                int64_t dt = now_ms - en->last_ms;
                en->interval_ms = dt < 0                 ? 0
                                  : dt > MAX_INTERVAL_MS ? MAX_INTERVAL_MS
                                                         : dt;
                unlink_engine(e, en);
                push_front(e, en);
        }
        /* the engine's entries leave the global counts while rebuilt */
        e->entries -= en->nentries;
        e->cmps -= en->ncmps;
        mls_strmap_init(&models);
        for (size_t i = 0; i < hb->nloaded; i++) {
                const struct mls_payload_loaded *l = &hb->loaded[i];
                const struct emodel *old = mls_strmap_get(
                        &en->models, l->model_id, strlen(l->model_id));
                struct emodel *em =
                        new_entry(e, &models, l->model_id, &entries);
                int64_t dt = now_ms - en->last_ms;
                if (!em) {
                        dropped++;
                        continue;
                }
                em->has_loaded = 1;
                em->l = *l;
                if (old && old->has_loaded) {
                        em->has_pred_rate =
                                rate(old->l.predictions, l->predictions, dt,
                                     &em->pred_rate);
                        em->has_err_rate = rate(old->l.errors, l->errors, dt,
                                                &em->err_rate);
                }
        }
        for (size_t i = 0; i < hb->ncomparisons; i++) {
                const struct mls_payload_comparison *c = &hb->comparisons[i];
                const struct emodel *old = mls_strmap_get(
                        &en->models, c->model_id, strlen(c->model_id));
                struct emodel *em =
                        e->cmps + cmps < MLS_ENGINES_MAX_COMPARISONS
                                ? new_entry(e, &models, c->model_id, &entries)
                                : NULL;
                if (!em || add_pair(em, c, old, now_ms) < 0) {
                        dropped++;
                        continue;
                }
                cmps++;
        }
        mls_strmap_free(&en->models, free_emodel);
        en->models = models;
        en->nentries = entries;
        en->ncmps = cmps;
        e->entries += entries;
        e->cmps += cmps;
        en->last_ms = now_ms;
        return dropped;
}

/* --- answers ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The most frequent of v[0..n) ("" for null; ties: the greater). Sorts v.
 * NULL when n is 0 or the winner is "". */
static const char *mode(const char **v, size_t n)
{
        const char *best = NULL;
        size_t best_n = 0, run = 0;

        qsort(v, n, sizeof(*v), cmp_str);
        for (size_t i = 0; i < n; i++) {
                run = i && strcmp(v[i], v[i - 1]) == 0 ? run + 1 : 1;
                if (run >= best_n) {
                        best_n = run;
                        best = v[i];
                }
        }
        return best && *best ? best : NULL;
}

static json_t *str_or_null(const char *s)
{
        return s ? json_string(s) : json_null();
}

static json_t *num_or_null(int known, double v)
{
        return known && isfinite(v) ? json_real(v) : json_null();
}

int mls_engines_status(const mls_engines_t *e, const char *model_id,
                       json_t *status)
{
        size_t n = e->map.count, k = 0, mlen = strlen(model_id);
        const struct emodel **ems = malloc((n ? n : 1) * sizeof(*ems));
        const char **v = malloc((n ? n : 1) * sizeof(*v));
        const char *framework = NULL, *serving = NULL, *canary = NULL,
                   *shadow = NULL;
        double pred = 0, err = 0, share = 0;
        int has_pred = 0, has_err = 0, rc = -1;
        size_t nshare = 0;

        if (!ems || !v)
                goto out;
        for (const struct engine *en = e->head; en; en = en->next) {
                const struct emodel *em =
                        mls_strmap_get(&en->models, model_id, mlen);
                if (!em || !em->has_loaded)
                        continue;
                ems[k++] = em;
                if (em->has_pred_rate) {
                        pred += em->pred_rate;
                        has_pred = 1;
                }
                if (em->has_err_rate) {
                        err += em->err_rate;
                        has_err = 1;
                }
        }
#define VOTE(dst, member)                        \
        do {                                     \
                for (size_t i = 0; i < k; i++)   \
                        v[i] = ems[i]->l.member; \
                dst = mode(v, k);                \
        } while (0)
        VOTE(framework, framework);
        VOTE(serving, serving);
        VOTE(canary, canary);
        VOTE(shadow, shadow);
#undef VOTE
        for (size_t i = 0; canary && i < k; i++)
                if (strcmp(ems[i]->l.canary, canary) == 0 &&
                    !isnan(ems[i]->l.canary_share)) {
                        share += ems[i]->l.canary_share;
                        nshare++;
                }
        if (json_object_set_new(status, "framework", str_or_null(framework)) ||
            json_object_set_new(status, "servingVersion",
                                str_or_null(serving)) ||
            json_object_set_new(status, "canaryVersion", str_or_null(canary)) ||
            json_object_set_new(
                    status, "canaryShare",
                    num_or_null(nshare > 0,
                                share / (double)(nshare ? nshare : 1))) ||
            json_object_set_new(status, "shadowVersion", str_or_null(shadow)) ||
            json_object_set_new(status, "engines",
                                json_integer((json_int_t)k)) ||
            json_object_set_new(status, "predictionsPerSecond",
                                num_or_null(has_pred, pred)) ||
            json_object_set_new(status, "errorsPerSecond",
                                num_or_null(has_err, err)))
                goto out;
        rc = 0;
out:
        free(ems);
        free(v);
        return rc;
}

double mls_engines_quantile(const double *le, const double *counts, unsigned n,
                            double q)
{
        double total = 0, target, before = 0;

        if (!n)
                return NAN;
        for (unsigned i = 0; i <= n; i++)
                total += counts[i];
        if (!(total > 0))
                return NAN;
        target = q * total;
        for (unsigned i = 0; i < n; i++) {
                double lower = i ? le[i - 1] : 0;
                if (counts[i] > 0 && before + counts[i] >= target)
                        return lower +
                               (le[i] - lower) * (target - before) / counts[i];
                before += counts[i];
        }
        return le[n - 1];
}

/* One (serving, shadow) pair summed over engines. */
struct agg {
        const struct pair *first; /* its strings, and bounds when set */
        double rows, agreements, abs_diff_sum;
        double ss, sc, hs, hc;
        double counts[MLS_PAYLOAD_MAX_BUCKETS + 1];
        const double *le; /* NULL: no histogram yet */
        unsigned nbuckets;
        int64_t changed_ms;
        int engines;
};

static void add_to(struct agg *a, const struct pair *p)
{
        const struct mls_payload_comparison *c = &p->c;

        a->rows += c->rows;
        a->agreements += c->agreements;
        a->abs_diff_sum += c->abs_diff_sum;
        a->ss += c->serving_seconds;
        a->sc += c->serving_calls;
        a->hs += c->shadow_seconds;
        a->hc += c->shadow_calls;
        a->engines++;
        if (p->changed_ms > a->changed_ms)
                a->changed_ms = p->changed_ms;
        if (!c->nbuckets)
                return;
        if (!a->le) {
                a->le = c->le;
                a->nbuckets = c->nbuckets;
        } else if (a->nbuckets != c->nbuckets ||
                   memcmp(a->le, c->le, c->nbuckets * sizeof(double)) != 0) {
                return; /* other bounds: not summable, left out of p95 */
        }
        for (unsigned i = 0; i <= c->nbuckets; i++)
                a->counts[i] += c->counts[i];
}

static int cmp_agg(const void *x, const void *y)
{
        const struct agg *a = x, *b = y;
        int r;

        if (a->changed_ms != b->changed_ms)
                return a->changed_ms > b->changed_ms ? -1 : 1;
        r = strcmp(a->first->c.serving, b->first->c.serving);
        return r ? r : strcmp(a->first->c.shadow, b->first->c.shadow);
}

static json_t *ratio(double num, double den, double scale)
{
        return den > 0 ? json_real(num / den * scale) : json_null();
}

static json_t *agg_json(const char *model_id, const struct agg *a)
{
        double p95 = a->le ? mls_engines_quantile(a->le, a->counts, a->nbuckets,
                                                  0.95)
                           : NAN;

        return json_pack(
                "{s:s,s:s,s:s,s:f,s:o,s:o,s:o,s:o,s:o,s:i}", "modelId",
                model_id, "servingVersion", a->first->c.serving,
                "shadowVersion", a->first->c.shadow, "rows", a->rows,
                "agreementRate", ratio(a->agreements, a->rows, 1),
                "meanAbsDiff", ratio(a->abs_diff_sum, a->rows, 1), "p95AbsDiff",
                isnan(p95) ? json_null() : json_real(p95), "servingLatencyMs",
                ratio(a->ss, a->sc, 1000), "shadowLatencyMs",
                ratio(a->hs, a->hc, 1000), "engines", a->engines);
}

json_t *mls_engines_comparisons(const mls_engines_t *e, const char *model_id)
{
        size_t mlen = strlen(model_id), n = 0;
        struct agg *aggs = NULL;
        json_t *out = json_array();

        if (!out)
                return NULL;
        for (const struct engine *en = e->head; en; en = en->next) {
                const struct emodel *em =
                        mls_strmap_get(&en->models, model_id, mlen);
                for (unsigned i = 0; em && i < em->npairs; i++) {
                        const struct pair *p = &em->pairs[i];
                        size_t j;
                        for (j = 0; j < n; j++)
                                if (strcmp(aggs[j].first->c.serving,
                                           p->c.serving) == 0 &&
                                    strcmp(aggs[j].first->c.shadow,
                                           p->c.shadow) == 0)
                                        break;
                        if (j == n) {
                                if (n == MAX_AGG_PAIRS)
                                        continue;
                                if (!aggs) {
                                        aggs = calloc(MAX_AGG_PAIRS,
                                                      sizeof(*aggs));
                                        if (!aggs)
                                                goto fail;
                                }
                                aggs[n++].first = p;
                        }
                        add_to(&aggs[j], p);
                }
        }
        if (n)
                qsort(aggs, n, sizeof(*aggs), cmp_agg);
        for (size_t j = 0; j < n && j < MLS_ENGINES_MAX_PAIRS; j++)
                if (json_array_append_new(out, agg_json(model_id, &aggs[j])) <
                    0)
                        goto fail;
        free(aggs);
        return out;
fail:
        free(aggs);
        json_decref(out);
        return NULL;
}
