/* microq runtime: int8 group and instance normalization over NHWC, integer-only. */
#ifndef MQ_GROUPNORM_H
#define MQ_GROUPNORM_H

#include "mq_types.h"

/* Fractional bits of the normalized value z = (x - mean) / sqrt(var + eps) (Q.20). */
#define MQ_GROUPNORM_NORM_BITS 20
/* Fractional bits, in output steps, at which gamma * z and beta are added before the one
 * final rounding. */
#define MQ_GROUPNORM_OUT_BITS 8
/* Most values normalized together (spatial * channels / groups): keeps |z| < 2^29. */
#define MQ_GROUPNORM_MAX_COUNT 262144

/* The channels split into `groups` runs of channels / groups consecutive channels; each run is
 * normalized over every spatial position of one batch, so count = spatial * channels / groups
 * values share one mean and variance (instance normalization: groups == channels).
 * var_bits (even, 0..16) are extra fractional bits of the variance, so that a small eps keeps
 * its precision; count^2 * 2^(14 + var_bits) <= 2^60 must hold (var_bits = 16 up to
 * count = 2^15, two bits less per doubling). eps is the float epsilon in the integer domain of
 * the kernel's variance V: round(eps_real / input_scale^2 * count^2 * 2^var_bits), in
 * [0, 2^61]. The input zero point cancels out. */
typedef struct {
    int32_t groups;
    int32_t var_bits;
    int64_t eps;
    int32_t output_offset; /* +output zero point */
    int32_t act_min;
    int32_t act_max;
} mq_groupnorm_params;

/* Per batch and group, over its count int8 values x (S the sum, Q the sum of squares):
 *   n    = count * x - S                        (= count * (x - mean), exact)
 *   V    = (count * Q - S^2) * 2^var_bits + eps  (= count^2 * 2^var_bits * (var + eps), int64)
 *   z    = round(n * 2^(var_bits / 2) / sqrt(V) * 2^NORM_BITS)   (integer inverse sqrt;
 *          z = 0 when V = 0, so a constant group gives beta, never a division by zero)
 *   out[c] = clamp(output_offset + RDBPOT(MBQM(z, multiplier[c], shift[c]) + bias[c],
 *                                         MQ_GROUPNORM_OUT_BITS))       (c the channel)
 * @param quant  per-channel [channels]: multiplier (signed, it carries gamma's sign) and shift
 *               in [-31, 0] encode gamma[c] / output_scale * 2^(OUT_BITS - NORM_BITS)
 * @param bias   [channels] int32, round(beta[c] / output_scale * 2^OUT_BITS), |bias| <= 2^30
 * @param input  [batches, spatial, channels] (NHWC with spatial = H * W), output likewise;
 *               channels % groups == 0, 1 <= spatial * channels / groups <=
 *               MQ_GROUPNORM_MAX_COUNT */
mq_status mq_groupnorm_s8(const mq_groupnorm_params *params, const mq_per_channel_quant *quant,
                          const int32_t *bias, int32_t batches, int32_t spatial, int32_t channels,
                          const int8_t *input, int8_t *output);

#endif /* MQ_GROUPNORM_H */
