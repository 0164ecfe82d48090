/*
 * SGD with momentum and weight decay, as torch.optim.SGD (dampening 0):
 *
 *     d = grad + weight_decay * w
 *     v = d                      on the first step (PyTorch clones d into the buffer)
 *     v = momentum * v + d       afterwards
 *     d = nesterov ? d + momentum * v : v
 *     w = w - lr * d
 *
 * in float, element by element, over every trainable parameter (BN weight
 * and bias included, as PyTorch without param groups). The velocity follows
 * distq_trainer_grads order. Deliberately not here: learning-rate schedules
 * (the caller sets s->lr), dampening, param groups.
 */
#include <string.h>

#include "train/train_impl.h"

distq_status distq_sgd_init(distq_sgd *s, distq_trainer *t, float lr, float momentum, float weight_decay)
{
    if (!s || !t) return distq_error_set(DISTQ_ERR_INVALID_ARG, "sgd: optimizer or trainer is NULL");
    memset(s, 0, sizeof *s);
    if (!(lr >= 0.0f) || !(momentum >= 0.0f) || !(weight_decay >= 0.0f))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "sgd: lr %g, momentum %g, weight_decay %g must be >= 0",
                               (double)lr, (double)momentum, (double)weight_decay);
    s->lr = lr;
    s->momentum = momentum;
    s->weight_decay = weight_decay;
    distq_trainer_grads(t, &s->count);
    s->velocity = distq_calloc((size_t)s->count * sizeof *s->velocity);
    if (!s->velocity) return distq_error_set(DISTQ_ERR_NOMEM, "out of memory (sgd velocity, %lld floats)",
                                             (long long)s->count);
    return DISTQ_OK;
}

distq_status distq_sgd_step(distq_sgd *s, distq_graph *g, distq_trainer *t)
{
    int64_t count = 0;
    const float *grads = distq_trainer_grads(t, &count);
    if (g != t->g || count != s->count || !s->velocity)
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "sgd: optimizer, trainer and graph do not belong together");
    if (s->nesterov && !(s->momentum > 0.0f))
        return distq_error_set(DISTQ_ERR_INVALID_ARG, "sgd: nesterov needs momentum > 0");
    float lr = s->lr, mom = s->momentum, wd = s->weight_decay;
    int first = s->step == 0;
    for (int p = 0; p < g->n_params; p++) {
        const float *gp = distq_trainer_grad(t, p);
        if (!gp) continue;
        float *w = g->params[p].data, *v = s->velocity + (gp - grads);
        int64_t n = distq_tensor_numel(&g->params[p]);
        for (int64_t i = 0; i < n; i++) {
            float d = gp[i] + wd * w[i];
            if (mom != 0.0f) {
                v[i] = first ? d : mom * v[i] + d;
                d = s->nesterov ? d + mom * v[i] : v[i];
            }
            w[i] -= lr * d;
        }
    }
    s->step++;
    return DISTQ_OK;
}

void distq_sgd_free(distq_sgd *s)
{
    if (!s) return;
    distq_free(s->velocity);
    s->velocity = NULL;
    s->count = 0;
}
