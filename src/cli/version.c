/*
 * `mlstream version` and `mlstream --version`: this build, then every
 * library it runs with, one "name version" line each, in a fixed order.
 * Framework plugins are opened to ask for their version, so a plugin that
 * is built in but cannot be loaded shows up here with the reason.
 */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef MLS_HAVE_GATEWAY
#include <libwebsockets.h>
#include <uv.h>
#endif

#include "cli/cli.h"
#include "model/model.h"

/* Opens the plugin of framework name with stderr sent to /dev/null:
 * frameworks log while they load (TensorFlow's oneDNN notice), which has no
 * place in a version listing. A failure is still reported, in errstr. */
static const struct mls_model_type *find_quietly(const char *name, char *errstr,
                                                 size_t errstr_size)
{
        const struct mls_model_type *t;
        int saved = dup(STDERR_FILENO);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

        fflush(stderr);
        if (saved >= 0 && null >= 0)
                dup2(null, STDERR_FILENO);
        t = mls_model_type_find(name, errstr, errstr_size);
        fflush(stderr);
        if (saved >= 0 && null >= 0)
                dup2(saved, STDERR_FILENO);
        if (saved >= 0)
                close(saved);
        if (null >= 0)
                close(null);
        return t;
}

/* Prints one line per framework built in besides identity. */
static void print_frameworks(FILE *out)
{
        char list[256], errstr[512];
        char *name, *save = NULL;

        mls_model_types_list(list, sizeof(list));
        for (name = strtok_r(list, ", ", &save); name;
             name = strtok_r(NULL, ", ", &save)) {
                const struct mls_model_type *t;

                if (strcmp(name, "identity") == 0)
                        continue;
                t = find_quietly(name, errstr, sizeof(errstr));
                if (!t)
                        fprintf(out, "%s unavailable (%s)\n", name, errstr);
                else if (t->framework_version)
                        fprintf(out, "%s %s\n", name, t->framework_version());
                else
                        fprintf(out, "%s unknown\n", name);
        }
}

int mls_cli_version(FILE *out)
{
#ifdef MLS_HAVE_GATEWAY
        const char *lws;
        size_t n;
#endif

        fprintf(out, "mlstream %s (git %s)\n", MLS_VERSION, mls_git_revision);
        fprintf(out, "librdkafka %s\n", rd_kafka_version_str());
        fprintf(out, "hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR,
                HIREDIS_PATCH);
#ifdef MLS_HAVE_GATEWAY
        /* "4.1.6-" when built without a git hash: the dash goes. */
        lws = lws_get_library_version();
        n = strlen(lws);
        while (n > 0 && (lws[n - 1] == '-' || lws[n - 1] == ' '))
                n--;
        fprintf(out, "libwebsockets %.*s\n", (int)n, lws);
#endif
        fprintf(out, "jansson %s\n", jansson_version_str());
#ifdef MLS_HAVE_GATEWAY
        fprintf(out, "libuv %s\n", uv_version_string());
#endif
        print_frameworks(out);
        return fflush(out) == 0 ? 0 : 1;
}
