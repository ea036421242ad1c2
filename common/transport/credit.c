/* Credit-based flow control (see credit.h). */
#include "common/transport/credit.h"

#include "common/core/log.h"

int credit_sender_init(struct credit_sender *s, int64_t max)
{
    if (!s) return sushi_error(SUSHI_EINVAL, "credit_sender_init: NULL argument");
    if (max < 1) return sushi_error(SUSHI_EINVAL, "credit: max %lld must be >= 1", (long long)max);
    s->credits = 0;
    s->max = max;
    return SUSHI_OK;
}

int credit_can_send(const struct credit_sender *s) { return s && s->credits > 0; }

int credit_take(struct credit_sender *s)
{
    if (!s) return sushi_error(SUSHI_EINVAL, "credit_take: NULL argument");
    if (s->credits <= 0) return sushi_error(SUSHI_EINVAL, "credit: no credit left to send");
    s->credits--;
    return SUSHI_OK;
}

int credit_grant(struct credit_sender *s, int64_t n)
{
    if (!s) return sushi_error(SUSHI_EINVAL, "credit_grant: NULL argument");
    if (n < 1 || n > s->max - s->credits)
        return sushi_error(SUSHI_EFORMAT, "credit: grant of %lld with %lld held exceeds the window "
                           "of %lld", (long long)n, (long long)s->credits, (long long)s->max);
    s->credits += n;
    return SUSHI_OK;
}

int credit_receiver_init(struct credit_receiver *r, int64_t window)
{
    if (!r) return sushi_error(SUSHI_EINVAL, "credit_receiver_init: NULL argument");
    if (window < 1) return sushi_error(SUSHI_EINVAL, "credit: window %lld must be >= 1", (long long)window);
    r->window = window;
    r->outstanding = 0;
    r->held = 0;
    return SUSHI_OK;
}

int64_t credit_to_grant(struct credit_receiver *r)
{
    if (!r) return 0;
    int64_t n = r->window - r->outstanding - r->held;
    if (n < 0) n = 0;
    r->outstanding += n;
    return n;
}

int credit_arrived(struct credit_receiver *r)
{
    if (!r) return sushi_error(SUSHI_EINVAL, "credit_arrived: NULL argument");
    if (r->outstanding <= 0)
        return sushi_error(SUSHI_EFORMAT, "credit: message arrived without a credit (window %lld, "
                           "%lld held)", (long long)r->window, (long long)r->held);
    r->outstanding--;
    r->held++;
    return SUSHI_OK;
}

int credit_done(struct credit_receiver *r, int64_t n)
{
    if (!r) return sushi_error(SUSHI_EINVAL, "credit_done: NULL argument");
    if (n < 0 || n > r->held)
        return sushi_error(SUSHI_EINVAL, "credit: %lld done but only %lld held", (long long)n,
                           (long long)r->held);
    r->held -= n;
    return SUSHI_OK;
}

int credit_put(struct wire_msg *m, int64_t n)
{
    if (!m) return sushi_error(SUSHI_EINVAL, "credit_put: NULL message");
    if (n < 1) return sushi_error(SUSHI_EINVAL, "credit_put: grant %lld must be >= 1", (long long)n);
    if (!m->meta && !(m->meta = json_object())) return sushi_error(SUSHI_ENOMEM, "credit_put: out of memory");
    if (json_object_set_new(m->meta, "credit", json_integer(n)))
        return sushi_error(SUSHI_ENOMEM, "credit_put: out of memory");
    return SUSHI_OK;
}

int credit_get(const struct wire_msg *m, int64_t *n)
{
    if (!m || !n) return sushi_error(SUSHI_EINVAL, "credit_get: NULL argument");
    json_t *c = m->meta ? json_object_get(m->meta, "credit") : NULL;
    if (!c) return 0;
    if (!json_is_integer(c) || json_integer_value(c) < 1)
        return sushi_error(SUSHI_EFORMAT, "meta.credit: expected a positive integer");
    *n = json_integer_value(c);
    return 1;
}
