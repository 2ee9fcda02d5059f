/* microq runtime: batched int8 matrix multiply.
 *
 * Accumulator range: with offsets in [-127, 128] both factors of a term lie in [-255, 255], so
 * |term| <= 65025 and K <= 32768 terms sum to at most 2130739200 < 2^31 - 1.
 */
#include "mq_matmul.h"
#include "mq_requant.h"

/* A batch or head axis of an operand: its own size must be the output's or 1 (broadcast). */
static int32_t broadcasts(int32_t in, int32_t out)
{
    return in == out || in == 1;
}

mq_status mq_batch_matmul_s8(const mq_batch_matmul_params *params, const mq_dims *lhs_dims,
                             const int8_t *lhs, const mq_dims *rhs_dims, const int8_t *rhs,
                             const mq_dims *output_dims, int8_t *output)
{
    int32_t rows, cols, depth;
    int32_t rhs_row_stride, rhs_depth_stride;
    int32_t b, h, i, j, k;

    if (!params || !lhs_dims || !lhs || !rhs_dims || !rhs || !output_dims || !output ||
        params->lhs_offset < -127 || params->lhs_offset > 128 || params->rhs_offset < -127 ||
        params->rhs_offset > 128 || params->act_min < -128 || params->act_min > params->act_max ||
        params->act_max > 127) {
        return MQ_ERR_ARG;
    }
    rows = output_dims->w;
    cols = output_dims->c;
    depth = lhs_dims->c;
    if (output_dims->n < 1 || output_dims->h < 1 || rows < 1 || cols < 1 || depth < 1 ||
        depth > MQ_MATMUL_MAX_DEPTH || lhs_dims->w != rows ||
        !broadcasts(lhs_dims->n, output_dims->n) || !broadcasts(lhs_dims->h, output_dims->h) ||
        !broadcasts(rhs_dims->n, output_dims->n) || !broadcasts(rhs_dims->h, output_dims->h)) {
        return MQ_ERR_ARG;
    }
    if (params->rhs_transposed) {
        /* rhs [N, K]: column j of rhs' is row j of rhs. */
        if (rhs_dims->w != cols || rhs_dims->c != depth) {
            return MQ_ERR_ARG;
        }
        rhs_row_stride = depth;
        rhs_depth_stride = 1;
    } else {
        if (rhs_dims->w != depth || rhs_dims->c != cols) {
            return MQ_ERR_ARG;
        }
        rhs_row_stride = 1;
        rhs_depth_stride = cols;
    }

    for (b = 0; b < output_dims->n; ++b) {
        for (h = 0; h < output_dims->h; ++h) {
            const int32_t lhs_mat =
                (lhs_dims->n == 1 ? 0 : b) * lhs_dims->h + (lhs_dims->h == 1 ? 0 : h);
            const int32_t rhs_mat =
                (rhs_dims->n == 1 ? 0 : b) * rhs_dims->h + (rhs_dims->h == 1 ? 0 : h);
            const int8_t *a = lhs + lhs_mat * rows * depth;
            const int8_t *m = rhs + rhs_mat * cols * depth;
            for (i = 0; i < rows; ++i) {
                const int8_t *a_row = a + i * depth;
                for (j = 0; j < cols; ++j) {
                    const int8_t *m_col = m + j * rhs_row_stride;
                    int32_t acc = 0;
                    int32_t v;
                    for (k = 0; k < depth; ++k) {
                        acc += ((int32_t)a_row[k] + params->lhs_offset) *
                               ((int32_t)m_col[k * rhs_depth_stride] + params->rhs_offset);
                    }
                    v = mq_mbqm(acc, params->output_multiplier, params->output_shift) +
                        params->output_offset;
                    *output++ = (int8_t)mq_clamp(v, params->act_min, params->act_max);
                }
            }
        }
    }
    return MQ_OK;
}
