#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 1000
#define MAX_BUCKETS 32
#define NLABELS 3

const double mls_latency_buckets[] = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
const size_t mls_latency_nbuckets =
        sizeof(mls_latency_buckets) / sizeof(mls_latency_buckets[0]);

struct mls_series {
        struct mls_series *next;
        struct mls_metric *metric;
        char *v[NLABELS];
        _Atomic uint64_t value; /* double bits: counter/gauge, histogram sum */
        _Atomic uint64_t count;
        _Atomic uint64_t buckets[MAX_BUCKETS];
};

struct mls_metric {
        struct mls_metric *next;
        enum mls_metric_type type;
        char *name, *help, *l[NLABELS];
        double buckets[MAX_BUCKETS];
        size_t nbuckets;
        struct mls_series *_Atomic series;
        size_t nseries;
        struct mls_metrics *reg;
};

struct mls_metrics {
        pthread_mutex_t lock;
        struct mls_metric *head, *tail;
};

mls_metrics_t *mls_metrics_new(void)
{
        mls_metrics_t *reg = calloc(1, sizeof(*reg));

        if (reg)
                pthread_mutex_init(&reg->lock, NULL);
        return reg;
}

void mls_metrics_free(mls_metrics_t *reg)
{
        struct mls_metric *m, *mn;
        struct mls_series *s, *sn;

        if (!reg)
                return;
        for (m = reg->head; m; m = mn) {
                mn = m->next;
                for (s = m->series; s; s = sn) {
                        sn = s->next;
                        for (int i = 0; i < NLABELS; i++)
                                free(s->v[i]);
                        free(s);
                }
                free(m->name);
                free(m->help);
                for (int i = 0; i < NLABELS; i++)
                        free(m->l[i]);
                free(m);
        }
        pthread_mutex_destroy(&reg->lock);
        free(reg);
}

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

mls_metric_t *mls_metric_new(mls_metrics_t *reg, enum mls_metric_type type,
                             const char *name, const char *help,
                             const char *label1, const char *label2,
                             const double *buckets, size_t nbuckets)
{
        return mls_metric_new3(reg, type, name, help, label1, label2, NULL,
                               buckets, nbuckets);
}

mls_metric_t *mls_metric_new3(mls_metrics_t *reg, enum mls_metric_type type,
                              const char *name, const char *help,
                              const char *label1, const char *label2,
                              const char *label3, const double *buckets,
                              size_t nbuckets)
{
        const char *labels[NLABELS] = {label1, label2, label3};

        struct mls_metric *m;

        if (nbuckets > MAX_BUCKETS)
                return NULL;
        pthread_mutex_lock(&reg->lock);
        for (m = reg->head; m; m = m->next)
                if (strcmp(m->name, name) == 0)
                        goto out;
        m = calloc(1, sizeof(*m));
        if (!m)
                goto out;
        m->type = type;
        m->reg = reg;
        m->name = strdup(name);
        m->help = strdup(help);
        for (int i = 0; i < NLABELS; i++)
                m->l[i] = dup_or_null(labels[i]);
        if (buckets)
                memcpy(m->buckets, buckets, nbuckets * sizeof(double));
        m->nbuckets = nbuckets;
        if (reg->tail)
                reg->tail->next = m;
        else
                reg->head = m;
        reg->tail = m;
out:
        pthread_mutex_unlock(&reg->lock);
        return m;
}

static int same(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

mls_series_t *mls_series(mls_metric_t *m, const char *v1, const char *v2)
{
        return mls_series3(m, v1, v2, NULL);
}

mls_series_t *mls_series3(mls_metric_t *m, const char *v1, const char *v2,
                          const char *v3)
{
        const char *v[NLABELS] = {v1, v2, v3};
        struct mls_series *s;

        if (!m)
                return NULL;
        pthread_mutex_lock(&m->reg->lock);
        for (s = m->series; s; s = s->next)
                if (same(s->v[0], v[0]) && same(s->v[1], v[1]) &&
                    same(s->v[2], v[2]))
                        goto out;
        if (m->nseries >= MAX_SERIES)
                goto out;
        s = calloc(1, sizeof(*s));
        if (!s)
                goto out;
        s->metric = m;
        for (int i = 0; i < NLABELS; i++)
                s->v[i] = dup_or_null(v[i]);
        s->next = m->series;
        m->nseries++;
        /* Publish after the series is complete: render walks without the
         * lock held for the values, but under it for the list. */
        atomic_store_explicit(&m->series, s, memory_order_release);
out:
        pthread_mutex_unlock(&m->reg->lock);
        return s;
}

void mls_series_remove(mls_series_t *s)
{
        struct mls_metric *m;
        struct mls_series *p;

        if (!s)
                return;
        m = s->metric;
        pthread_mutex_lock(&m->reg->lock);
        p = atomic_load_explicit(&m->series, memory_order_relaxed);
        if (p == s) {
                atomic_store_explicit(&m->series, s->next,
                                      memory_order_release);
        } else {
                while (p && p->next != s)
                        p = p->next;
                if (p)
                        p->next = s->next;
        }
        if (p)
                m->nseries--;
        pthread_mutex_unlock(&m->reg->lock);
        if (!p)
                return; /* not in the family: not ours to free */
        for (int i = 0; i < NLABELS; i++)
                free(s->v[i]);
        free(s);
}

static double bits_to_double(uint64_t b)
{
        double d;

        memcpy(&d, &b, sizeof(d));
        return d;
}

static uint64_t double_to_bits(double d)
{
        uint64_t b;

        memcpy(&b, &d, sizeof(b));
        return b;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
        uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

        while (!atomic_compare_exchange_weak_explicit(
                p, &old, double_to_bits(bits_to_double(old) + v),
                memory_order_relaxed, memory_order_relaxed))
                ;
}

void mls_series_add(mls_series_t *s, double v)
{
        if (s)
                atomic_add_double(&s->value, v);
}

void mls_series_set(mls_series_t *s, double v)
{
        if (s)
                atomic_store_explicit(&s->value, double_to_bits(v),
                                      memory_order_relaxed);
}

void mls_series_observe(mls_series_t *s, double v)
{
        const struct mls_metric *m;
        size_t i;

        if (!s)
                return;
        m = s->metric;
        for (i = 0; i < m->nbuckets && v > m->buckets[i]; i++)
                ;
        if (i < m->nbuckets)
                atomic_fetch_add_explicit(&s->buckets[i], 1,
                                          memory_order_relaxed);
        atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
        atomic_add_double(&s->value, v);
}

void mls_series_observe_counts(mls_series_t *s, const uint64_t *counts,
                               double sum)
{
        uint64_t n = 0;

        if (!s)
                return;
        for (size_t i = 0; i <= s->metric->nbuckets; i++) {
                if (i < s->metric->nbuckets && counts[i])
                        atomic_fetch_add_explicit(&s->buckets[i], counts[i],
                                                  memory_order_relaxed);
                n += counts[i];
        }
        atomic_fetch_add_explicit(&s->count, n, memory_order_relaxed);
        atomic_add_double(&s->value, sum);
}

double mls_series_value(const mls_series_t *s)
{
        return s ? bits_to_double(atomic_load_explicit(
                           (_Atomic uint64_t *)&s->value, memory_order_relaxed))
                 : 0;
}

uint64_t mls_series_count(const mls_series_t *s)
{
        return s ? atomic_load_explicit((_Atomic uint64_t *)&s->count,
                                        memory_order_relaxed)
                 : 0;
}

static void put_label_value(struct mls_buf *out, const char *v)
{
        for (; *v; v++) {
                if (*v == '\\' || *v == '"')
                        mls_buf_putc(out, '\\'), mls_buf_putc(out, *v);
                else if (*v == '\n')
                        mls_buf_puts(out, "\\n");
                else
                        mls_buf_putc(out, *v);
        }
}

/* Writes {l1="v1",l2="v2",...,extra} or nothing when there are no
 * labels. */
static void put_labels(struct mls_buf *out, const struct mls_series *s,
                       const char *extra)
{
        const struct mls_metric *m = s->metric;
        int any = 0;

        for (int i = 0; i < NLABELS; i++) {
                if (!m->l[i] || !s->v[i])
                        continue;
                mls_buf_printf(out, "%s%s=\"", any ? "," : "{", m->l[i]);
                put_label_value(out, s->v[i]);
                mls_buf_putc(out, '"');
                any = 1;
        }
        if (!any && !extra)
                return;
        if (!any)
                mls_buf_putc(out, '{');
        if (extra)
                mls_buf_printf(out, "%s%s", any ? "," : "", extra);
        mls_buf_putc(out, '}');
}

static void put_number(struct mls_buf *out, double v)
{
        if (isinf(v))
                mls_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
        else if (isnan(v))
                mls_buf_puts(out, "NaN");
        else if (v == floor(v) && fabs(v) < 1e15)
                mls_buf_printf(out, "%.0f", v);
        else
                mls_buf_printf(out, "%.17g", v);
}

static void render_series(struct mls_buf *out, const struct mls_series *s)
{
        const struct mls_metric *m = s->metric;
        char le[64];
        uint64_t cum = 0;

        if (m->type != MLS_HISTOGRAM) {
                mls_buf_puts(out, m->name);
                put_labels(out, s, NULL);
                mls_buf_putc(out, ' ');
                put_number(out, mls_series_value(s));
                mls_buf_putc(out, '\n');
                return;
        }
        for (size_t i = 0; i < m->nbuckets; i++) {
                cum += atomic_load_explicit(
                        &((struct mls_series *)s)->buckets[i],
                        memory_order_relaxed);
                snprintf(le, sizeof(le), "le=\"%g\"", m->buckets[i]);
                mls_buf_printf(out, "%s_bucket", m->name);
                put_labels(out, s, le);
                mls_buf_printf(out, " %llu\n", (unsigned long long)cum);
        }
        /* Read count last so +Inf >= every bucket even under updates. */
        cum = mls_series_count(s) > cum ? mls_series_count(s) : cum;
        mls_buf_printf(out, "%s_bucket", m->name);
        put_labels(out, s, "le=\"+Inf\"");
        mls_buf_printf(out, " %llu\n", (unsigned long long)cum);
        mls_buf_printf(out, "%s_sum", m->name);
        put_labels(out, s, NULL);
        mls_buf_putc(out, ' ');
        put_number(out, mls_series_value(s));
        mls_buf_printf(out, "\n%s_count", m->name);
        put_labels(out, s, NULL);
        mls_buf_printf(out, " %llu\n", (unsigned long long)cum);
}

int mls_metrics_render(mls_metrics_t *reg, struct mls_buf *out)
{
        static const char *const types[] = {"counter", "gauge", "histogram"};

        pthread_mutex_lock(&reg->lock);
        for (struct mls_metric *m = reg->head; m; m = m->next) {
                mls_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name,
                               m->help, m->name, types[m->type]);
                for (struct mls_series *s = m->series; s; s = s->next)
                        render_series(out, s);
        }
        pthread_mutex_unlock(&reg->lock);
        return out->overflow ? -1 : 0;
}
