/*
 * libFuzzer target for the engine's /metrics server (src/common/httpd.c):
 * what a client sends, read in the pieces the first byte chooses, as
 * conn_read() reads it into its 8 KiB buffer. Looking for the end of the
 * head only in what each read added finds it exactly where a search of
 * the whole buffer does; the request line then gives a status the server
 * answers with, and for a GET or HEAD a path that lies in the request,
 * fits, and holds no space, query or NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpd.h"

#define REQ_MAX 8192 /* as httpd.c */

/* The reference: a blank line anywhere in req[0..len). */
static int head_ends(const char *req, size_t len)
{
        for (size_t i = 1; i < len; i++)
                if (req[i] == '\n' &&
                    (req[i - 1] == '\n' ||
                     (i >= 3 && req[i - 1] == '\r' && req[i - 2] == '\n' &&
                      req[i - 3] == '\r')))
                        return 1;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char req[REQ_MAX];
        char path[1024];
        size_t step, len = 0;
        int complete = 0, head = -1, rc;

        if (size < 1)
                return 0;
        step = 1 + data[0] % 64;
        data++;
        size--;
        while (len < size && len < REQ_MAX - 1 && !complete) {
                size_t from = len, n = size - len;
                if (n > step)
                        n = step;
                if (n > REQ_MAX - 1 - len)
                        n = REQ_MAX - 1 - len;
                memcpy(req + len, data + len, n);
                len += n;
                req[len] = '\0';
                complete = mls_httpd_head_complete(req, from, len);
                if (complete != head_ends(req, len))
                        abort();
        }
        if (!complete)
                return 0;
        rc = mls_httpd_request_line(req, path, sizeof(path), &head);
        if (rc != 0 && rc != 400 && rc != 405)
                abort();
        if (rc == 0) {
                size_t plen = strlen(path);
                if (!plen || plen >= sizeof(path) || head < 0 || head > 1 ||
                    strpbrk(path, " \t\r\n?") || !memmem(req, len, path, plen))
                        abort();
                /* the method, then a space or tab */
                size_t mlen = head ? 4 : 3;
                if (memcmp(req, head ? "HEAD" : "GET", mlen) ||
                    (req[mlen] != ' ' && req[mlen] != '\t'))
                        abort();
        }
        return 0;
}
