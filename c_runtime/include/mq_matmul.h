/* microq runtime: batched int8 matrix multiply of two activations (attention's Q.K^T, A.V). */
#ifndef MQ_MATMUL_H
#define MQ_MATMUL_H

#include "mq_types.h"

/* Longest reduction (K) the int32 accumulator is proven to hold; see mq_matmul.c. */
#define MQ_MATMUL_MAX_DEPTH 32768

typedef struct {
    int32_t rhs_transposed;    /* 1: rhs is stored [.., N, K] (A.B^T without a transpose op) */
    int32_t lhs_offset;        /* -lhs zero point, in [-127, 128] */
    int32_t rhs_offset;        /* -rhs zero point, in [-127, 128] */
    int32_t output_offset;     /* +output zero point */
    int32_t output_multiplier; /* per-tensor: lhs_scale * rhs_scale / output_scale */
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
} mq_batch_matmul_params;

/* out[b, h, i, j] = clamp(output_offset + MBQM(sum_k (lhs[b, h, i, k] + lhs_offset) *
 *                                              (rhs'[b, h, k, j] + rhs_offset)))
 * where rhs' = rhs, or rhs with its two innermost axes swapped when rhs_transposed.
 * Dims use mq_dims as {n, h, w, c} = {batch, heads, rows, cols}:
 * @param lhs_dims    {B_l, H_l, M, K}
 * @param rhs_dims    {B_r, H_r, K, N}, or {B_r, H_r, N, K} when rhs_transposed
 * @param output_dims {B, H, M, N}; a batch or head axis of size 1 in lhs or rhs broadcasts
 *                    (numpy rules), otherwise it equals the output's.
 * No bias; K <= MQ_MATMUL_MAX_DEPTH. */
mq_status mq_batch_matmul_s8(const mq_batch_matmul_params *params, const mq_dims *lhs_dims,
                             const int8_t *lhs, const mq_dims *rhs_dims, const int8_t *rhs,
                             const mq_dims *output_dims, int8_t *output);

#endif /* MQ_MATMUL_H */
