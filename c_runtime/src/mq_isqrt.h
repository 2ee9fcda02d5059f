/* microq runtime (internal): the integer inverse square root shared by the normalization
 * kernels (mq_layernorm.c, mq_groupnorm.c). */
#ifndef MQ_ISQRT_H
#define MQ_ISQRT_H

#include <stdint.h>

/* 1 / sqrt(v) for 0 < v < 2^62, as y * 2^-(30 + k) with y in (2^29, 2^30]. */
int32_t mq_inv_sqrt_q30(int64_t v, int32_t *k);

#endif /* MQ_ISQRT_H */
