#include "gateway/frame.h"

#include <stdlib.h>
#include <string.h>

struct mls_frame *mls_frame_new(const void *data, size_t len)
{
        struct mls_frame *f = malloc(sizeof(*f) + len + 1);

        if (!f)
                return NULL;
        f->refs = 1;
        f->len = len;
        if (len)
                memcpy(f->data, data, len);
        f->data[len] = '\0';
        return f;
}

void mls_frame_unref(struct mls_frame *f)
{
        if (f && --f->refs == 0)
                free(f);
}
