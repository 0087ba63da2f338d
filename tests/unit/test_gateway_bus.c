/*
 * The gateway as `mlstream up` uses it: bus mode (no Redis), run on its own
 * thread, fed through mls_gateway_publish() from another, queried over
 * HTTP, stopped from outside. Uses a loopback port picked by the kernel.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/metrics.h"
#include "gateway/gateway.h"
#include "test.h"

static void *runner(void *arg)
{
        static int status;

        status = mls_gateway_run(arg);
        return &status;
}

/* One HTTP/1.0 request; returns the whole response (malloc'd) or NULL. */
static char *http(int port, const char *req)
{
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port)};
        size_t len = 0, cap = 65536;
        char *out = malloc(cap);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ssize_t n;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
                if (fd >= 0)
                        close(fd);
                free(out);
                return NULL;
        }
        while ((n = read(fd, out + len, cap - 1 - len)) > 0)
                len += (size_t)n;
        out[len] = '\0';
        close(fd);
        return out;
}

static void sleep_ms(int ms)
{
        struct timespec ts = {0, ms * 1000000L};

        nanosleep(&ts, NULL);
}

MLS_TEST(gateway_bus_publish_query_stop)
{
        static const char pred[] =
                "{\"type\":\"prediction\",\"inference_id\":\"i\","
                "\"model_id\":\"busm\",\"predictions\":[1],\"latency_ms\":2.5,"
                "\"received_at\":\"2026-01-01T00:00:00Z\"}";
        static const char query[] =
                "GET /graphql?query=%7BmlStreamingStatus(modelId:%22busm%22)"
                "%7BwindowSize%20averageLatencyMs%20connected%7D%7D "
                "HTTP/1.0\r\nHost: x\r\n\r\n";
        struct mls_config cfg;
        mls_metrics_t *metrics = mls_metrics_new();
        mls_gateway_t *g;
        pthread_t th;
        char err[512], *resp = NULL;
        void *rv;
        int port;

        CHECK(mls_config_load(&cfg, MLS_SCOPE_UP, NULL, 0, NULL, err,
                              sizeof(err)) == 0);
        CHECK(mls_config_set(&cfg, "GATEWAY_PORT", "0", err, sizeof(err)) == 0);
        CHECK(mls_config_set(&cfg, "GATEWAY_HOST", "127.0.0.1", err,
                             sizeof(err)) == 0);
        mls_config_set(&cfg, "ML_LOG_LEVEL", "warn", err, sizeof(err));
        g = mls_gateway_new(&cfg, metrics, 1, err, sizeof(err));
        if (!g)
                fprintf(stderr, "    %s\n", err);
        CHECK(g != NULL);
        port = mls_gateway_port(g);
        CHECK(port > 0);
        CHECK(pthread_create(&th, NULL, runner, g) == 0);
        CHECK_INT_EQ(mls_gateway_publish(g, pred, sizeof(pred) - 1), 0);
        for (int i = 0; i < 200; i++) {
                free(resp);
                resp = http(port, query);
                if (resp && strstr(resp, "\"windowSize\":1"))
                        break;
                sleep_ms(10);
        }
        CHECK_CONTAINS(resp, " 200 OK\r\n");
        CHECK_CONTAINS(resp, "{\"data\":{\"mlStreamingStatus\":{\"windowSize\""
                             ":1,\"averageLatencyMs\":2.5,\"connected\":"
                             "true}}}");
        free(resp);
        resp = http(port, "GET /readyz HTTP/1.0\r\n\r\n");
        CHECK_CONTAINS(resp, " 200 OK\r\n");
        free(resp);
        mls_gateway_stop(g);
        CHECK(pthread_join(th, &rv) == 0);
        CHECK_INT_EQ(*(int *)rv, 0);
        mls_gateway_free(g);
        mls_metrics_free(metrics);
        mls_config_free(&cfg);
}

MLS_TEST(gateway_bus_port_in_use)
{
        struct mls_config cfg;
        mls_metrics_t *metrics = mls_metrics_new();
        mls_gateway_t *a, *b;
        char err[512], port[16];

        CHECK(mls_config_load(&cfg, MLS_SCOPE_UP, NULL, 0, NULL, err,
                              sizeof(err)) == 0);
        mls_config_set(&cfg, "GATEWAY_PORT", "0", err, sizeof(err));
        mls_config_set(&cfg, "GATEWAY_HOST", "127.0.0.1", err, sizeof(err));
        a = mls_gateway_new(&cfg, metrics, 1, err, sizeof(err));
        CHECK(a != NULL);
        snprintf(port, sizeof(port), "%d", mls_gateway_port(a));
        mls_config_set(&cfg, "GATEWAY_PORT", port, err, sizeof(err));
        b = mls_gateway_new(&cfg, metrics, 1, err, sizeof(err));
        CHECK(b == NULL);
        CHECK_CONTAINS(err, port);
        CHECK_CONTAINS(err, "port already in use");
        CHECK_CONTAINS(err, "GATEWAY_PORT");
        CHECK_CONTAINS(err, "--gateway-port");
        /* never run: free still cleans up */
        mls_gateway_free(a);
        mls_metrics_free(metrics);
        mls_config_free(&cfg);
}
