/* microq runtime: the integer inverse square root of the normalization kernels. */
#include "mq_isqrt.h"

#define Q30_ONE ((int64_t)1 << 30)

/* v = a * 4^k with a in [1, 4), and y in (2^29, 2^30] is 1 / sqrt(a) in Q.30. Newton's
 * iteration y' = y * (3 - a * y^2) / 2 from the chord 1 - (a - 1) / 6 (relative error <= 6%)
 * reaches the Q.30 resolution in 4 steps. Only int64 multiplies and shifts: no division, no
 * libm. All intermediate values are positive and below 2^62. */
int32_t mq_inv_sqrt_q30(int64_t v, int32_t *k)
{
    int32_t bits = 0;
    int64_t a;
    int64_t y;
    int32_t i;

    while ((v >> bits) > 1) {
        ++bits;
    }
    *k = bits >> 1;
    a = 2 * *k <= 30 ? v << (30 - 2 * *k) : v >> (2 * *k - 30);
    /* 43691 / 2^18 ~ 1/6: a 64-bit division would call a library routine on Cortex-M. */
    y = Q30_ONE - (((a - Q30_ONE) * 43691) >> 18);
    for (i = 0; i < 4; ++i) {
        const int64_t a_y2 = (a * ((y * y) >> 30)) >> 30;
        y = (y * (3 * Q30_ONE - a_y2)) >> 31;
    }
    return (int32_t)y;
}
