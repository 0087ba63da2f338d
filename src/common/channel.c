#include "common/channel.h"

#include <string.h>

int mls_channel_per_model(const struct mls_config *cfg)
{
        return cfg->redis_channel_mode &&
               strcmp(cfg->redis_channel_mode, "per-model") == 0;
}

int mls_channel_model(struct mls_buf *b, const char *prefix, const char *model,
                      size_t mlen)
{
        mls_buf_puts(b, prefix);
        mls_buf_puts(b, ":{");
        mls_buf_append(b, model, mlen);
        return mls_buf_putc(b, '}') < 0 || b->overflow ? -1 : 0;
}

int mls_channel_control(struct mls_buf *b, const char *prefix)
{
        mls_buf_puts(b, prefix);
        return mls_buf_puts(b, ":control") < 0 || b->overflow ? -1 : 0;
}

const char *mls_channel_model_of(const char *prefix, const char *ch, size_t len,
                                 size_t *mlen)
{
        size_t plen = strlen(prefix);

        if (len < plen + 3 || memcmp(ch, prefix, plen) != 0 ||
            ch[plen] != ':' || ch[plen + 1] != '{' || ch[len - 1] != '}')
                return NULL;
        *mlen = len - plen - 3;
        return ch + plen + 2;
}
