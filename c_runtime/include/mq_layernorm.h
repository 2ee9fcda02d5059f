/* microq runtime: int8 layer normalization over the last axis, integer-only. */
#ifndef MQ_LAYERNORM_H
#define MQ_LAYERNORM_H

#include "mq_types.h"

/* Fractional bits of the normalized value z = (x - mean) / sqrt(var + eps) (Q11.20). */
#define MQ_LAYERNORM_NORM_BITS 20
/* Fractional bits, in output steps, at which gamma * z and beta are added before the one
 * final rounding. */
#define MQ_LAYERNORM_OUT_BITS 8
/* Extra fractional bits of the variance, so that a small eps keeps its precision. */
#define MQ_LAYERNORM_VAR_BITS 16
/* Longest row: keeps sum(x^2) in int32 and |z| < 2^28 (|z| <= sqrt(row_size - 1)). */
#define MQ_LAYERNORM_MAX_ROW 32768

/* eps is the float epsilon in the integer domain of the kernel's variance V:
 * round(eps_real / input_scale^2 * row_size^2 * 2^MQ_LAYERNORM_VAR_BITS), in [0, 2^61].
 * The input zero point cancels out. */
typedef struct {
    int64_t eps;
    int32_t output_offset; /* +output zero point */
    int32_t act_min;
    int32_t act_max;
} mq_layernorm_params;

/* Per row of row_size int8 values x[c] (c the channel):
 *   n[c]  = row_size * x[c] - sum(x)                     (= row_size * (x[c] - mean), exact)
 *   V     = (row_size * sum(x^2) - sum(x)^2) * 2^VAR_BITS + eps
 *                                               (= row_size^2 * 2^VAR_BITS * (var + eps), int64)
 *   z[c]  = round(n[c] * 2^(VAR_BITS / 2) / sqrt(V) * 2^NORM_BITS)  (integer inverse sqrt;
 *           z = 0 when V = 0, so a constant row gives beta, never a division by zero)
 *   out[c] = clamp(output_offset + RDBPOT(MBQM(z[c], multiplier[c], shift[c]) + bias[c],
 *                                         MQ_LAYERNORM_OUT_BITS))
 * @param quant  per-channel [row_size]: multiplier (signed, it carries gamma's sign) and shift
 *               in [-31, 0] encode gamma[c] / output_scale * 2^(OUT_BITS - NORM_BITS)
 * @param bias   [row_size] int32, round(beta[c] / output_scale * 2^OUT_BITS), |bias| <= 2^30
 * @param input  [rows, row_size], output likewise; 1 <= row_size <= MQ_LAYERNORM_MAX_ROW */
mq_status mq_layernorm_s8(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                          const int32_t *bias, int32_t rows, int32_t row_size, const int8_t *input,
                          int8_t *output);

#endif /* MQ_LAYERNORM_H */
