/* microq runtime: int8 group and instance normalization, integer-only.
 *
 * The arithmetic of mq_layernorm.c, with the statistics of a group gathered over every
 * spatial position of its channels (NHWC: the group's channels are a contiguous run of each
 * pixel). Mean and variance are never divided out: n = count * (x - mean) and
 * V = count^2 * var * 2^var_bits are exact integers, and the normalized value is
 * n * 2^(var_bits / 2) / sqrt(V). The input zero point cancels in x - mean.
 *
 * Ranges, count <= 2^18: |x| <= 128, so |S| <= 2^25 and |n| <= 256 * count <= 2^26 are int32;
 * Q <= 2^32 is int64, and count * Q - S^2 <= count^2 * 2^14, times 2^var_bits is <= 2^60 by the
 * var_bits bound, plus eps <= 2^61 stays below 2^62 (the inverse square root's domain).
 * |n| * 2^(var_bits / 2) / sqrt(V) <= sqrt(count - 1) < 2^9, hence |z| < 2^29 (|n * inv| <=
 * 2^26 * 2^30 is int64). A shift <= 0 makes MBQM a multiplication by less than one, so
 * |MBQM(z)| <= |z| + 1 and adding |bias| <= 2^30 stays inside int32.
 */
#include "mq_groupnorm.h"
#include "mq_isqrt.h"
#include "mq_requant.h"

/* count^2 * 2^(14 + var_bits) <= 2^60, i.e. count <= 2^((46 - var_bits) / 2). */
static int var_bits_fit(int32_t count, int32_t var_bits)
{
    return (int64_t)count <= ((int64_t)1 << ((46 - var_bits) / 2));
}

mq_status mq_groupnorm_s8(const mq_groupnorm_params *params, const mq_per_channel_quant *quant,
                          const int32_t *bias, int32_t batches, int32_t spatial, int32_t channels,
                          const int8_t *input, int8_t *output)
{
    const int32_t bias_max = (int32_t)1 << 30;
    int32_t width, count, b, g, s, c;

    if (!params || !quant || !quant->multiplier || !quant->shift || !bias || !input || !output ||
        batches < 0 || spatial < 1 || channels < 1 || params->groups < 1 ||
        params->groups > channels || channels % params->groups != 0) {
        return MQ_ERR_ARG;
    }
    width = channels / params->groups;
    if (spatial > MQ_GROUPNORM_MAX_COUNT / width || params->var_bits < 0 || params->var_bits > 16 ||
        params->var_bits % 2 != 0 || params->eps < 0 || params->eps > ((int64_t)1 << 61) ||
        params->act_min < -128 || params->act_min > params->act_max || params->act_max > 127) {
        return MQ_ERR_ARG;
    }
    count = spatial * width;
    if (!var_bits_fit(count, params->var_bits)) {
        return MQ_ERR_ARG;
    }
    for (c = 0; c < channels; ++c) {
        if (quant->shift[c] > 0 || quant->shift[c] < -31 || quant->multiplier[c] == INT32_MIN ||
            bias[c] > bias_max || bias[c] < -bias_max) {
            return MQ_ERR_ARG;
        }
    }

    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + (int64_t)b * spatial * channels;
        int8_t *y = output + (int64_t)b * spatial * channels;
        for (g = 0; g < params->groups; ++g) {
            const int32_t c0 = g * width;
            int32_t sum = 0;
            int64_t sum_sq = 0;
            int64_t var;
            int32_t inv = 0;
            int32_t k = 0;
            int32_t norm_shift;
            int64_t round;

            for (s = 0; s < spatial; ++s) {
                const int8_t *px = x + (int64_t)s * channels + c0;
                for (c = 0; c < width; ++c) {
                    sum += px[c];
                    sum_sq += (int32_t)px[c] * px[c];
                }
            }
            var = (int64_t)count * sum_sq - (int64_t)sum * sum;
            var = var * ((int64_t)1 << params->var_bits) + params->eps;
            /* var == 0 only for a constant group without eps: then every n is 0 and inv = 0
             * keeps z = 0, so the output is beta. */
            if (var > 0) {
                inv = mq_inv_sqrt_q30(var, &k);
            }
            /* z = n * 2^(var_bits / 2) * inv * 2^-(30 + k) * 2^NORM_BITS; the shift is >= 2. */
            norm_shift = 30 + k - MQ_GROUPNORM_NORM_BITS - params->var_bits / 2;
            round = (int64_t)1 << (norm_shift - 1);
            {
                /* Locals: the int8 stores below may alias anything, so fields read through
                 * the pointers would be reloaded for every element. */
                const int32_t *mult = quant->multiplier + c0;
                const int32_t *shift = quant->shift + c0;
                const int32_t *beta = bias + c0;
                const int32_t output_offset = params->output_offset;
                const int32_t act_min = params->act_min;
                const int32_t act_max = params->act_max;
                for (s = 0; s < spatial; ++s) {
                    const int8_t *px = x + (int64_t)s * channels + c0;
                    int8_t *py = y + (int64_t)s * channels + c0;
                    for (c = 0; c < width; ++c) {
                        const int32_t n = count * px[c] - sum;
                        /* arithmetic right shift rounds to nearest, ties up */
                        const int32_t z = (int32_t)(((int64_t)n * inv + round) >> norm_shift);
                        const int32_t acc = mq_mbqm(z, mult[c], shift[c]) + beta[c];
                        const int32_t v = mq_rdbpot(acc, MQ_GROUPNORM_OUT_BITS) + output_offset;
                        py[c] = (int8_t)mq_clamp(v, act_min, act_max);
                    }
                }
            }
        }
    }
    return MQ_OK;
}
