/* microq runtime: int8 add, sub, mul, maximum, minimum, prelu with numpy broadcasting; lookup
 * table; requantize.
 * Bit-exact with the TFLite Micro reference kernels (integer_ops/add.h, mul.h, requantize.h). */
#include "mq_dsp.h"
#include "mq_elementwise.h"
#include "mq_requant.h"

typedef enum { MQ_EW_ADD, MQ_EW_SUB, MQ_EW_MUL, MQ_EW_MAX, MQ_EW_MIN, MQ_EW_PRELU } mq_ew_op;

typedef struct {
    mq_ew_op op;
    const mq_add_params *add; /* also MQ_EW_MAX / MQ_EW_MIN */
    const mq_mul_params *mul;
    const mq_prelu_params *prelu;
} mq_ew_kernel;

/* Offsets are -zero_point / +zero_point of an int8 tensor; anything beyond +-255 is a bug in
 * the caller and would void the overflow arguments below. */
static int offset_ok(int32_t offset)
{
    return offset >= -255 && offset <= 255;
}

static int shift_ok(int32_t shift)
{
    /* The range MBQM supports in both rounding modes. */
    return shift >= -31 && shift <= 30;
}

static mq_status check_add_params(const mq_add_params *p)
{
    /* TFLite's add multipliers are all "smaller than one" (shift <= 0) and left_shift is 20 for
     * int8. With |x + offset| < 2^9 and left_shift <= 20 each rescaled input stays below 2^29,
     * so a + b and a - b cannot overflow int32. */
    if (!offset_ok(p->input1_offset) || !offset_ok(p->input2_offset) ||
        !offset_ok(p->output_offset) || p->left_shift < 0 || p->left_shift > 20 ||
        p->input1_shift > 0 || p->input2_shift > 0 || p->output_shift > 0 ||
        !shift_ok(p->input1_shift) || !shift_ok(p->input2_shift) || !shift_ok(p->output_shift) ||
        p->input1_multiplier < 0 || p->input2_multiplier < 0 || p->output_multiplier < 0 ||
        p->act_min > p->act_max) {
        return MQ_ERR_ARG;
    }
    return MQ_OK;
}

static mq_status check_mul_params(const mq_mul_params *p)
{
    /* |x1 + offset1| * |x2 + offset2| < 2^18, so with a left shift of at most 12 the product
     * and its requantized value stay below 2^30 in both rounding modes. A larger multiplier
     * would saturate every non-zero product anyway. */
    if (!offset_ok(p->input1_offset) || !offset_ok(p->input2_offset) ||
        !offset_ok(p->output_offset) || !shift_ok(p->output_shift) || p->output_shift > 12 ||
        p->output_multiplier < 0 || p->act_min > p->act_max) {
        return MQ_ERR_ARG;
    }
    return MQ_OK;
}

/* ADD / SUB over one run: the parameters are copied to locals and the three multipliers set up
 * once (mq_rq), so the loop body is three multiply-shifts and the clamp. */
static void add_row(const mq_add_params *p, const int8_t *in1, int32_t stride1, const int8_t *in2,
                    int32_t stride2, int8_t *out, int32_t n, int32_t negate)
{
    const mq_rq q1 = mq_rq_channel(p->input1_multiplier, p->input1_shift);
    const mq_rq q2 = mq_rq_channel(p->input2_multiplier, p->input2_shift);
    const mq_rq qo = mq_rq_channel(p->output_multiplier, p->output_shift);
    const int32_t offset1 = p->input1_offset;
    const int32_t offset2 = p->input2_offset;
    const int32_t scale = (int32_t)1 << p->left_shift;
    const int32_t output_offset = p->output_offset;
    const int32_t act_min = p->act_min;
    const int32_t act_max = p->act_max;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t scaled1 = mq_rq_apply(&q1, ((int32_t)in1[i * stride1] + offset1) * scale);
        const int32_t scaled2 = mq_rq_apply(&q2, ((int32_t)in2[i * stride2] + offset2) * scale);
        const int32_t raw = negate ? scaled1 - scaled2 : scaled1 + scaled2;
        out[i] = mq_rq_out(&qo, raw, output_offset, act_min, act_max);
    }
}

/* MAXIMUM / MINIMUM over one run: ADD's rescaling of both inputs to one scale, then the larger
 * (smaller) of the two is requantized instead of their sum. */
static void minmax_row(const mq_add_params *p, const int8_t *in1, int32_t stride1,
                       const int8_t *in2, int32_t stride2, int8_t *out, int32_t n, int32_t is_min)
{
    const int32_t scale = (int32_t)1 << p->left_shift;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t scaled1 = mq_mbqm(((int32_t)in1[i * stride1] + p->input1_offset) * scale,
                                        p->input1_multiplier, p->input1_shift);
        const int32_t scaled2 = mq_mbqm(((int32_t)in2[i * stride2] + p->input2_offset) * scale,
                                        p->input2_multiplier, p->input2_shift);
        const int32_t raw = (is_min ? scaled2 < scaled1 : scaled2 > scaled1) ? scaled2 : scaled1;
        const int32_t v = mq_mbqm(raw, p->output_multiplier, p->output_shift) + p->output_offset;
        out[i] = (int8_t)mq_clamp(v, p->act_min, p->act_max);
    }
}

static void prelu_row(const mq_prelu_params *p, const int8_t *in1, int32_t stride1,
                      const int8_t *in2, int32_t stride2, int8_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = (int32_t)in1[i * stride1] + p->input_offset;
        const int32_t r = v >= 0 ? mq_mbqm(v, p->output_multiplier_1, p->output_shift_1)
                                 : mq_mbqm(v * ((int32_t)in2[i * stride2] + p->alpha_offset),
                                           p->output_multiplier_2, p->output_shift_2);
        out[i] = (int8_t)mq_clamp(r + p->output_offset, p->act_min, p->act_max);
    }
}

static inline int8_t mul_one(const mq_mul_params *p, int32_t x1, int32_t x2)
{
    const int32_t prod = (x1 + p->input1_offset) * (x2 + p->input2_offset);
    const int32_t out = mq_mbqm(prod, p->output_multiplier, p->output_shift) + p->output_offset;
    return (int8_t)mq_clamp(out, p->act_min, p->act_max);
}

/* One run of n outputs; the inputs advance by stride1/stride2 (0 on a broadcast axis). The
 * switch sits outside the loop so each loop body is a straight line. */
static void run_row(const mq_ew_kernel *k, const int8_t *in1, int32_t stride1, const int8_t *in2,
                    int32_t stride2, int8_t *out, int32_t n)
{
    int32_t i;
    switch (k->op) {
    case MQ_EW_ADD:
        add_row(k->add, in1, stride1, in2, stride2, out, n, 0);
        break;
    case MQ_EW_SUB:
        add_row(k->add, in1, stride1, in2, stride2, out, n, 1);
        break;
    case MQ_EW_MUL:
        for (i = 0; i < n; ++i) {
            out[i] = mul_one(k->mul, in1[i * stride1], in2[i * stride2]);
        }
        break;
    case MQ_EW_MAX:
        minmax_row(k->add, in1, stride1, in2, stride2, out, n, 0);
        break;
    case MQ_EW_MIN:
        minmax_row(k->add, in1, stride1, in2, stride2, out, n, 1);
        break;
    case MQ_EW_PRELU:
        prelu_row(k->prelu, in1, stride1, in2, stride2, out, n);
        break;
    }
}

/* Walks the output in row-major order over the last `rank` axes of the (right-aligned)
 * broadcast arrays: the innermost axis is a run_row call, the outer axes an odometer that keeps
 * each input's element offset in step with the output index. */
static mq_status broadcast_walk(const mq_ew_kernel *k, const mq_broadcast *b, const int8_t *input1,
                                const int8_t *input2, int8_t *output)
{
    const int32_t last = MQ_MAX_DIMS - 1;
    int32_t first;
    int32_t d;
    int32_t total = 1;
    int32_t expected = 1;
    int contiguous = 1;
    int32_t idx[MQ_MAX_DIMS] = {0};
    int32_t off1 = 0;
    int32_t off2 = 0;
    int32_t rows;
    int32_t r;

    if (b->rank < 0 || b->rank > MQ_MAX_DIMS) {
        return MQ_ERR_ARG;
    }
    /* Rank 0 (a scalar) uses the innermost padded axis, which has size 1. */
    first = MQ_MAX_DIMS - (b->rank > 0 ? b->rank : 1);
    for (d = last; d >= first; --d) {
        if (b->out_shape[d] < 0 || b->in1_strides[d] < 0 || b->in2_strides[d] < 0) {
            return MQ_ERR_ARG;
        }
        /* A size-1 axis never moves, so its strides do not matter for contiguity. */
        if (b->out_shape[d] != 1 &&
            (b->in1_strides[d] != expected || b->in2_strides[d] != expected)) {
            contiguous = 0;
        }
        expected *= b->out_shape[d];
        total *= b->out_shape[d];
    }
    if (total == 0) {
        return MQ_OK;
    }
    if (contiguous) {
        run_row(k, input1, 1, input2, 1, output, total);
        return MQ_OK;
    }
    rows = total / b->out_shape[last];
    for (r = 0; r < rows; ++r) {
        run_row(k, input1 + off1, b->in1_strides[last], input2 + off2, b->in2_strides[last], output,
                b->out_shape[last]);
        output += b->out_shape[last];
        for (d = last - 1; d >= first; --d) {
            off1 += b->in1_strides[d];
            off2 += b->in2_strides[d];
            if (++idx[d] < b->out_shape[d]) {
                break;
            }
            off1 -= b->in1_strides[d] * b->out_shape[d];
            off2 -= b->in2_strides[d] * b->out_shape[d];
            idx[d] = 0;
        }
    }
    return MQ_OK;
}

mq_status mq_add_s8(const mq_add_params *params, const mq_broadcast *bcast, const int8_t *input1,
                    const int8_t *input2, int8_t *output)
{
    mq_ew_kernel k;
    const mq_status status = check_add_params(params);
    if (status != MQ_OK) {
        return status;
    }
    k.op = MQ_EW_ADD;
    k.add = params;
    k.mul = NULL;
    k.prelu = NULL;
    return broadcast_walk(&k, bcast, input1, input2, output);
}

mq_status mq_sub_s8(const mq_add_params *params, const mq_broadcast *bcast, const int8_t *input1,
                    const int8_t *input2, int8_t *output)
{
    mq_ew_kernel k;
    const mq_status status = check_add_params(params);
    if (status != MQ_OK) {
        return status;
    }
    k.op = MQ_EW_SUB;
    k.add = params;
    k.mul = NULL;
    k.prelu = NULL;
    return broadcast_walk(&k, bcast, input1, input2, output);
}

mq_status mq_mul_s8(const mq_mul_params *params, const mq_broadcast *bcast, const int8_t *input1,
                    const int8_t *input2, int8_t *output)
{
    mq_ew_kernel k;
    const mq_status status = check_mul_params(params);
    if (status != MQ_OK) {
        return status;
    }
    k.op = MQ_EW_MUL;
    k.add = NULL;
    k.mul = params;
    k.prelu = NULL;
    return broadcast_walk(&k, bcast, input1, input2, output);
}

static mq_status minmax(const mq_add_params *params, const mq_broadcast *bcast,
                        const int8_t *input1, const int8_t *input2, int8_t *output, mq_ew_op op)
{
    mq_ew_kernel k;
    const mq_status status = check_add_params(params);
    if (status != MQ_OK) {
        return status;
    }
    k.op = op;
    k.add = params;
    k.mul = NULL;
    k.prelu = NULL;
    return broadcast_walk(&k, bcast, input1, input2, output);
}

mq_status mq_maximum_s8(const mq_add_params *params, const mq_broadcast *bcast,
                        const int8_t *input1, const int8_t *input2, int8_t *output)
{
    return minmax(params, bcast, input1, input2, output, MQ_EW_MAX);
}

mq_status mq_minimum_s8(const mq_add_params *params, const mq_broadcast *bcast,
                        const int8_t *input1, const int8_t *input2, int8_t *output)
{
    return minmax(params, bcast, input1, input2, output, MQ_EW_MIN);
}

mq_status mq_prelu_s8(const mq_prelu_params *params, const mq_broadcast *bcast, const int8_t *input,
                      const int8_t *alpha, int8_t *output)
{
    mq_ew_kernel k;
    const mq_prelu_params *p = params;
    /* |v| <= 255 and |v * (alpha + offset)| <= 255 * 255 < 2^16: with these left shifts at most,
     * MBQM's shifted operand stays inside int32. */
    if (!p || !offset_ok(p->input_offset) || !offset_ok(p->alpha_offset) ||
        !offset_ok(p->output_offset) || !shift_ok(p->output_shift_1) || p->output_shift_1 > 22 ||
        !shift_ok(p->output_shift_2) || p->output_shift_2 > 14 || p->output_multiplier_1 < 0 ||
        p->output_multiplier_2 < 0 || p->act_min > p->act_max) {
        return MQ_ERR_ARG;
    }
    k.op = MQ_EW_PRELU;
    k.add = NULL;
    k.mul = NULL;
    k.prelu = params;
    return broadcast_walk(&k, bcast, input, alpha, output);
}

mq_status mq_lut_s8(const int8_t *table, int32_t size, const int8_t *input, int8_t *output)
{
    int32_t i;
    if (size < 0) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        output[i] = table[(int32_t)input[i] + 128];
    }
    return MQ_OK;
}

mq_status mq_requantize_s8(const mq_requantize_params *params, int32_t size, const int8_t *input,
                           int8_t *output)
{
    int32_t i;
    if (size < 0) {
        return MQ_ERR_ARG;
    }
    /* |x + offset| < 2^9, so a left shift up to 22 (a scale ratio up to 2^22) stays in int32. */
    if (!offset_ok(params->input_offset) || !offset_ok(params->output_offset) ||
        !shift_ok(params->shift) || params->shift > 22 || params->multiplier < 0 ||
        params->act_min > params->act_max) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const int32_t x = (int32_t)input[i] + params->input_offset;
        const int32_t out = mq_mbqm(x, params->multiplier, params->shift) + params->output_offset;
        output[i] = (int8_t)mq_clamp(out, params->act_min, params->act_max);
    }
    return MQ_OK;
}
