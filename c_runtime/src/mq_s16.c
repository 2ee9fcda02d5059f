/* microq runtime: the 16x8 kernels (int16 activations, int8 weights, int64 bias).
 * Bit-exact with TFLite Micro's int16 reference kernels; the numpy spec is
 * python/microq/ref/s16.py. See mq_s16.h. */
#include "mq_s16.h"
#include "mq_sigmoid_table.h"
#include "mq_isqrt.h"
#include "mq_requant.h"

#define MQ_S16_MIN (-32768)
#define MQ_S16_MAX 32767
#define MQ_S16_LUT_SIZE 513
#define MQ_SOFTMAX_S16_MAX_ROW 65536

/* The int64 -> int32 conversion of TFLite's C++ (two's complement truncation), defined. */
static int32_t wrap_i32(int64_t v)
{
    const uint32_t u = (uint32_t)(uint64_t)v;
    return u <= 0x7FFFFFFFu ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7FFFFFFF - 1;
}

/* int32 -> int16 truncation (TFLite stores a wider result into int16_t). */
static int16_t wrap_i16(int32_t v)
{
    const uint16_t u = (uint16_t)(uint32_t)v;
    return u <= 0x7FFFu ? (int16_t)u : (int16_t)((int32_t)u - 65536);
}

int32_t mq_mbqm64(int64_t acc, int32_t multiplier, int32_t shift)
{
    const int64_t reduced =
        multiplier < 0x7FFF0000 ? ((int64_t)multiplier + 32768) >> 16 : (int64_t)0x7FFF;
    const int32_t total = 15 - shift; /* 8..46 for shift in [-31, 7] */
    /* |acc| < 2^47 and reduced <= 2^15: the product and the rounding fit int64. The right
     * shift of a negative int64 is arithmetic on every compiler we target (as mq_rdbpot). */
    return wrap_i32((acc * reduced + ((int64_t)1 << (total - 1))) >> total);
}

static int quant_ok(const mq_per_channel_quant *q, int32_t channels)
{
    int32_t c;
    for (c = 0; c < channels; ++c) {
        if (q->multiplier[c] < 0 || q->shift[c] < -31 || q->shift[c] > 7) {
            return 0;
        }
    }
    return 1;
}

static int act_ok(int32_t lo, int32_t hi)
{
    return lo >= MQ_S16_MIN && hi <= MQ_S16_MAX && lo <= hi;
}

static int dims_ok(const mq_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int16_t finish(int64_t acc, const mq_per_channel_quant *q, int32_t c, int32_t lo, int32_t hi)
{
    return (int16_t)mq_clamp(mq_mbqm64(acc, q->multiplier[c], q->shift[c]), lo, hi);
}

static mq_status conv_args(const mq_conv_params *p, const mq_dims *in, const mq_dims *f,
                           const mq_dims *out)
{
    if (!dims_ok(in) || !dims_ok(f) || !dims_ok(out) || in->n != out->n || p->stride_h < 1 ||
        p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 || p->pad_top < 0 ||
        p->pad_left < 0 || !act_ok(p->act_min, p->act_max)) {
        return MQ_ERR_ARG;
    }
    return MQ_OK;
}

mq_status mq_conv2d_s16(const mq_conv_params *params, const mq_per_channel_quant *quant,
                        const mq_dims *input_dims, const int16_t *input, const mq_dims *filter_dims,
                        const int8_t *filter, const int64_t *bias, const mq_dims *output_dims,
                        int16_t *output)
{
    const mq_dims *in = input_dims;
    const mq_dims *f = filter_dims;
    const mq_dims *o = output_dims;
    int32_t b, oy, ox, oc, ky, kx, ic, groups, per_group;
    if (conv_args(params, in, f, o) != MQ_OK || in->c % f->c != 0 || f->n != o->c) {
        return MQ_ERR_ARG;
    }
    groups = in->c / f->c;
    if (o->c % groups != 0 || !quant_ok(quant, o->c)) {
        return MQ_ERR_ARG;
    }
    per_group = o->c / groups;
    for (b = 0; b < o->n; ++b) {
        for (oy = 0; oy < o->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < o->w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                for (oc = 0; oc < o->c; ++oc) {
                    const int32_t g = oc / per_group;
                    int64_t acc = 0;
                    for (ky = 0; ky < f->h; ++ky) {
                        const int32_t iy = y0 + ky * params->dilation_h;
                        if (iy < 0 || iy >= in->h) {
                            continue; /* out-of-image taps are skipped (zero padding) */
                        }
                        for (kx = 0; kx < f->w; ++kx) {
                            const int32_t ix = x0 + kx * params->dilation_w;
                            const int16_t *px;
                            const int8_t *pw;
                            if (ix < 0 || ix >= in->w) {
                                continue;
                            }
                            px = input + (((int64_t)b * in->h + iy) * in->w + ix) * in->c +
                                 (int64_t)g * f->c;
                            pw = filter + (((int64_t)oc * f->h + ky) * f->w + kx) * f->c;
                            for (ic = 0; ic < f->c; ++ic) {
                                acc += (int32_t)px[ic] * (int32_t)pw[ic];
                            }
                        }
                    }
                    if (bias != NULL) {
                        acc += bias[oc];
                    }
                    output[(((int64_t)b * o->h + oy) * o->w + ox) * o->c + oc] =
                        finish(acc, quant, oc, params->act_min, params->act_max);
                }
            }
        }
    }
    return MQ_OK;
}

mq_status mq_depthwise_conv2d_s16(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                  const mq_dims *input_dims, const int16_t *input,
                                  const mq_dims *filter_dims, const int8_t *filter,
                                  const int64_t *bias, const mq_dims *output_dims, int16_t *output)
{
    const mq_dims *in = input_dims;
    const mq_dims *f = filter_dims;
    const mq_dims *o = output_dims;
    int32_t b, oy, ox, oc, ky, kx;
    if (conv_args(params, in, f, o) != MQ_OK || f->n != 1 || f->c != o->c || params->ch_mult < 1 ||
        in->c * params->ch_mult != o->c || !quant_ok(quant, o->c)) {
        return MQ_ERR_ARG;
    }
    for (b = 0; b < o->n; ++b) {
        for (oy = 0; oy < o->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < o->w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                for (oc = 0; oc < o->c; ++oc) {
                    const int32_t ic = oc / params->ch_mult;
                    int64_t acc = 0;
                    for (ky = 0; ky < f->h; ++ky) {
                        const int32_t iy = y0 + ky * params->dilation_h;
                        if (iy < 0 || iy >= in->h) {
                            continue;
                        }
                        for (kx = 0; kx < f->w; ++kx) {
                            const int32_t ix = x0 + kx * params->dilation_w;
                            if (ix < 0 || ix >= in->w) {
                                continue;
                            }
                            acc +=
                                (int32_t)
                                    input[(((int64_t)b * in->h + iy) * in->w + ix) * in->c + ic] *
                                (int32_t)filter[((int64_t)ky * f->w + kx) * f->c + oc];
                        }
                    }
                    if (bias != NULL) {
                        acc += bias[oc];
                    }
                    output[(((int64_t)b * o->h + oy) * o->w + ox) * o->c + oc] =
                        finish(acc, quant, oc, params->act_min, params->act_max);
                }
            }
        }
    }
    return MQ_OK;
}

mq_status mq_fully_connected_s16(const mq_fc_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int16_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int64_t *bias, const mq_dims *output_dims, int16_t *output)
{
    const int32_t rows = input_dims->n * input_dims->h * input_dims->w;
    const int32_t k = input_dims->c;
    const int32_t n_out = filter_dims->n;
    int32_t r, o, i;
    if (!dims_ok(input_dims) || !dims_ok(filter_dims) || !dims_ok(output_dims) ||
        filter_dims->h * filter_dims->w * filter_dims->c != k || output_dims->c != n_out ||
        output_dims->n * output_dims->h * output_dims->w != rows ||
        !act_ok(params->act_min, params->act_max) || !quant_ok(quant, n_out)) {
        return MQ_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        const int16_t *x = input + (int64_t)r * k;
        for (o = 0; o < n_out; ++o) {
            const int8_t *w = filter + (int64_t)o * k;
            int64_t acc = 0;
            for (i = 0; i < k; ++i) {
                acc += (int32_t)x[i] * (int32_t)w[i];
            }
            if (bias != NULL) {
                acc += bias[o];
            }
            output[(int64_t)r * n_out + o] =
                finish(acc, quant, o, params->act_min, params->act_max);
        }
    }
    return MQ_OK;
}

/* ---- add / sub / mul with numpy broadcasting -------------------------------------------- */

typedef enum { MQ_S16_ADD, MQ_S16_SUB, MQ_S16_MUL } mq_s16_op;

static int bcast_ok(const mq_broadcast *b)
{
    int32_t d;
    if (b->rank < 1 || b->rank > MQ_MAX_DIMS) {
        return 0;
    }
    for (d = 0; d < MQ_MAX_DIMS; ++d) {
        if (b->out_shape[d] < 1 || b->in1_strides[d] < 0 || b->in2_strides[d] < 0) {
            return 0;
        }
    }
    return 1;
}

static int16_t binary_one(mq_s16_op op, const mq_add_params *a, const mq_mul_params *m, int32_t x1,
                          int32_t x2)
{
    int32_t v;
    if (op == MQ_S16_MUL) {
        v = mq_mbqm(x1 * x2, m->output_multiplier, m->output_shift);
        return (int16_t)mq_clamp(v, m->act_min, m->act_max);
    }
    {
        /* |x| <= 2^15, left_shift <= 15: the shifted inputs fit int32 and each rescaled one
         * is below 2^30 (multipliers smaller than one), so the sum cannot overflow. */
        const int32_t s1 = mq_mbqm((int32_t)((uint32_t)x1 << a->left_shift), a->input1_multiplier,
                                   a->input1_shift);
        const int32_t s2 = mq_mbqm((int32_t)((uint32_t)x2 << a->left_shift), a->input2_multiplier,
                                   a->input2_shift);
        v = mq_mbqm(op == MQ_S16_SUB ? s1 - s2 : s1 + s2, a->output_multiplier, a->output_shift);
        return (int16_t)mq_clamp(v, a->act_min, a->act_max);
    }
}

static mq_status binary_s16(mq_s16_op op, const mq_add_params *a, const mq_mul_params *m,
                            const mq_broadcast *b, const int16_t *in1, const int16_t *in2,
                            int16_t *out)
{
    int32_t idx[MQ_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
    int64_t off1 = 0, off2 = 0, total = 1, i;
    int32_t d;
    if (!bcast_ok(b)) {
        return MQ_ERR_ARG;
    }
    for (d = 0; d < MQ_MAX_DIMS; ++d) {
        total *= b->out_shape[d];
    }
    for (i = 0; i < total; ++i) {
        out[i] = binary_one(op, a, m, in1[off1], in2[off2]);
        for (d = MQ_MAX_DIMS - 1; d >= 0; --d) { /* odometer over the output axes */
            off1 += b->in1_strides[d];
            off2 += b->in2_strides[d];
            if (++idx[d] < b->out_shape[d]) {
                break;
            }
            off1 -= (int64_t)b->in1_strides[d] * b->out_shape[d];
            off2 -= (int64_t)b->in2_strides[d] * b->out_shape[d];
            idx[d] = 0;
        }
    }
    return MQ_OK;
}

static int shift_le0(int32_t s)
{
    return s >= -31 && s <= 0;
}

static mq_status add_args(const mq_add_params *p)
{
    if (p->input1_offset != 0 || p->input2_offset != 0 || p->output_offset != 0 ||
        p->left_shift < 0 || p->left_shift > 15 || !shift_le0(p->input1_shift) ||
        !shift_le0(p->input2_shift) || !shift_le0(p->output_shift) || p->input1_multiplier < 0 ||
        p->input2_multiplier < 0 || p->output_multiplier < 0 || !act_ok(p->act_min, p->act_max)) {
        return MQ_ERR_ARG;
    }
    return MQ_OK;
}

mq_status mq_add_s16(const mq_add_params *params, const mq_broadcast *bcast, const int16_t *input1,
                     const int16_t *input2, int16_t *output)
{
    if (add_args(params) != MQ_OK) {
        return MQ_ERR_ARG;
    }
    return binary_s16(MQ_S16_ADD, params, NULL, bcast, input1, input2, output);
}

mq_status mq_sub_s16(const mq_add_params *params, const mq_broadcast *bcast, const int16_t *input1,
                     const int16_t *input2, int16_t *output)
{
    if (add_args(params) != MQ_OK) {
        return MQ_ERR_ARG;
    }
    return binary_s16(MQ_S16_SUB, params, NULL, bcast, input1, input2, output);
}

mq_status mq_mul_s16(const mq_mul_params *params, const mq_broadcast *bcast, const int16_t *input1,
                     const int16_t *input2, int16_t *output)
{
    /* |x1 * x2| <= 2^30: no left shift, so MBQM's input stays in int32. */
    if (params->input1_offset != 0 || params->input2_offset != 0 || params->output_offset != 0 ||
        !shift_le0(params->output_shift) || params->output_multiplier < 0 ||
        !act_ok(params->act_min, params->act_max)) {
        return MQ_ERR_ARG;
    }
    return binary_s16(MQ_S16_MUL, NULL, params, bcast, input1, input2, output);
}

/* ---- softmax ------------------------------------------------------------------------------ */

/* TFLite LUTLookup(int16): 513 anchors, linear interpolation on the low 7 bits. */
static int16_t lut_lookup(int32_t v, const int16_t *lut)
{
    const int32_t index = 256 + (v >> 7); /* v in int16: index in [0, 511] */
    const int32_t offset = v & 0x7F;
    const int32_t base = lut[index];
    /* arithmetic right shift of a negative slope term, as mq_rdbpot */
    return wrap_i16(base + ((((int32_t)lut[index + 1] - base) * offset + 64) >> 7));
}

mq_status mq_lut_s16(const int16_t *table, int32_t size, const int16_t *input, int16_t *output)
{
    int32_t i;
    if (table == NULL || size < 0) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        output[i] = lut_lookup(input[i], table);
    }
    return MQ_OK;
}

static int32_t clz32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
}

mq_status mq_softmax_s16(const mq_softmax_s16_params *params, int32_t rows, int32_t row_size,
                         const int16_t *input, int16_t *output)
{
    int32_t r, c;
    if (rows < 0 || row_size < 1 || row_size > MQ_SOFTMAX_S16_MAX_ROW ||
        params->input_left_shift > 15 || params->input_left_shift < -31 ||
        params->input_multiplier < 0 || params->exp_lut == NULL ||
        params->one_over_one_plus_x_lut == NULL) {
        return MQ_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        const int16_t *x = input + (int64_t)r * row_size;
        int16_t *y = output + (int64_t)r * row_size;
        int32_t max_v = MQ_S16_MIN, sum = 0, headroom, shifted, sym, recip, right;
        for (c = 0; c < row_size; ++c) {
            max_v = x[c] > max_v ? x[c] : max_v;
        }
        for (c = 0; c < row_size; ++c) {
            /* diff in [-65535, 0]; input_left_shift <= 15 keeps diff << shift in int32 */
            const int32_t scaled =
                mq_mbqm((int32_t)x[c] - max_v, params->input_multiplier, params->input_left_shift) +
                32767;
            y[c] = lut_lookup(mq_clamp(scaled, MQ_S16_MIN, MQ_S16_MAX), params->exp_lut);
            sum += y[c]; /* <= 65536 * 32767 < 2^31 */
        }
        if (sum <= 0) {
            return MQ_ERR_ARG; /* impossible with TFLite's exp table: the max gives ~32767 */
        }
        headroom = clz32((uint32_t)sum); /* >= 1: sum < 2^31 */
        shifted = (int32_t)((((int64_t)sum << (headroom - 1)) + (1 << 13)) >> 14);
        sym = mq_clamp(shifted - ((1 << 15) + (1 << 16)), MQ_S16_MIN, MQ_S16_MAX);
        recip = lut_lookup(sym, params->one_over_one_plus_x_lut);
        right = 31 - headroom;
        for (c = 0; c < row_size; ++c) {
            const int64_t round = right > 0 ? (int64_t)1 << (right - 1) : 0;
            const int32_t res = (int32_t)(((int64_t)y[c] * recip + round) >> right);
            y[c] = (int16_t)mq_clamp(res, 0, MQ_S16_MAX);
        }
    }
    return MQ_OK;
}

/* ---- logistic / tanh ---------------------------------------------------------------------- */

static mq_status sigmoid_args(const mq_sigmoid_s16_params *p, int32_t *m, int32_t *ls)
{
    if (p->input_multiplier < 0 || p->input_multiplier > 32767 || p->input_left_shift < 0 ||
        p->input_left_shift > 31 || (p->input_multiplier == 0 && p->input_left_shift > 1)) {
        return MQ_ERR_ARG;
    }
    *m = p->input_multiplier;
    *ls = p->input_left_shift;
    if (*m == 0) { /* power-of-two input scale */
        *m = 3 << *ls;
        *ls = 0;
    }
    return MQ_OK;
}

/* (x * m + round) >> ls: |x * m| <= 2^30 and round <= 2^30 keep the sum in int32. */
static int32_t sigmoid_input(int32_t x, int32_t m, int32_t ls)
{
    const int32_t round = ls > 0 ? (int32_t)((uint32_t)1 << (ls - 1)) : 0;
    return (x * m + round) >> ls;
}

mq_status mq_logistic_s16(const mq_sigmoid_s16_params *params, int32_t size, const int16_t *input,
                          int16_t *output)
{
    int32_t m, ls, i;
    if (size < 0 || sigmoid_args(params, &m, &ls) != MQ_OK) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const int32_t v = sigmoid_input(input[i], m, ls);
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        const uint32_t uh = a >> 9;
        uint32_t res;
        if (uh >= 255) {
            res = 0x7FFFu << 10;
        } else {
            const uint32_t ua = mq_tfl_sigmoid_table[uh];
            const uint32_t ub = mq_tfl_sigmoid_table[uh + 1];
            res = (ua << 9) + (a & 0x1FFu) * (ub - ua);
        }
        res = v >= 0 ? res + (1u << 9) : (1u << 25) - res + (1u << 9) - 1u;
        output[i] = (int16_t)(res >> 10); /* <= 32767 */
    }
    return MQ_OK;
}

mq_status mq_tanh_s16(const mq_sigmoid_s16_params *params, int32_t size, const int16_t *input,
                      int16_t *output)
{
    int32_t m, ls, i;
    if (size < 0 || sigmoid_args(params, &m, &ls) != MQ_OK) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const int32_t v = sigmoid_input(input[i], m, ls);
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        const uint32_t uh = a >> 8;
        int32_t res;
        if (uh >= 255) {
            res = 0xFFFF << 8;
        } else {
            const uint32_t ua = mq_tfl_sigmoid_table[uh];
            const uint32_t ub = mq_tfl_sigmoid_table[uh + 1];
            res = (int32_t)((ua << 8) + (a & 0xFFu) * (ub - ua)); /* < 2^24 */
        }
        res = v >= 0 ? res - (1 << 23) + (1 << 7) : -res + (1 << 23) + (1 << 7) - 1;
        output[i] = wrap_i16(res >> 8); /* arithmetic shift, as TFLite */
    }
    return MQ_OK;
}

/* ---- requantize --------------------------------------------------------------------------- */

static mq_status requant_args(const mq_requantize_params *p, int32_t size)
{
    if (size < 0 || p->shift < -31 || p->shift > 14 || p->multiplier < 0 ||
        p->input_offset < -255 || p->input_offset > 255 || p->output_offset < -255 ||
        p->output_offset > 255 || p->act_min > p->act_max) {
        return MQ_ERR_ARG;
    }
    return MQ_OK;
}

static int32_t requant_one(const mq_requantize_params *p, int32_t x)
{
    /* |x + input_offset| < 2^16 and shift <= 14: the shifted value fits int32 */
    return mq_clamp(mq_mbqm(x + p->input_offset, p->multiplier, p->shift) + p->output_offset,
                    p->act_min, p->act_max);
}

mq_status mq_requantize_s8_s16(const mq_requantize_params *params, int32_t size,
                               const int8_t *input, int16_t *output)
{
    int32_t i;
    if (requant_args(params, size) != MQ_OK || !act_ok(params->act_min, params->act_max)) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        output[i] = (int16_t)requant_one(params, input[i]);
    }
    return MQ_OK;
}

mq_status mq_requantize_s16_s8(const mq_requantize_params *params, int32_t size,
                               const int16_t *input, int8_t *output)
{
    int32_t i;
    if (requant_args(params, size) != MQ_OK || params->act_min < -128 || params->act_max > 127) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        output[i] = (int8_t)requant_one(params, input[i]);
    }
    return MQ_OK;
}

mq_status mq_requantize_s16_s16(const mq_requantize_params *params, int32_t size,
                                const int16_t *input, int16_t *output)
{
    int32_t i;
    if (requant_args(params, size) != MQ_OK || !act_ok(params->act_min, params->act_max)) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        output[i] = (int16_t)requant_one(params, input[i]);
    }
    return MQ_OK;
}

/* ---- LayerNorm with an int16 input -------------------------------------------------------- */

static mq_status layernorm_s16(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                               const int32_t *bias, int32_t rows, int32_t row_size,
                               const int16_t *input, int16_t *out16, int8_t *out8)
{
    const int32_t bias_max = (int32_t)1 << 30;
    const int32_t lo = out8 != NULL ? -128 : MQ_S16_MIN;
    const int32_t hi = out8 != NULL ? 127 : MQ_S16_MAX;
    int32_t r, c;
    if (!params || !quant || !quant->multiplier || !quant->shift || !bias || !input || rows < 0 ||
        row_size < 1 || row_size > MQ_LAYERNORM_S16_MAX_ROW || params->eps < 0 ||
        params->eps > ((int64_t)1 << 61) || params->act_min < lo ||
        params->act_min > params->act_max || params->act_max > hi) {
        return MQ_ERR_ARG;
    }
    for (c = 0; c < row_size; ++c) {
        if (quant->shift[c] > 0 || quant->shift[c] < -31 || quant->multiplier[c] == INT32_MIN ||
            bias[c] > bias_max || bias[c] < -bias_max) {
            return MQ_ERR_ARG;
        }
    }
    for (r = 0; r < rows; ++r) {
        const int16_t *x = input + (int64_t)r * row_size;
        int64_t sum = 0, sum_sq = 0, var, round;
        int32_t inv = 0, k = 0, norm_shift;
        for (c = 0; c < row_size; ++c) {
            sum += x[c];
            sum_sq += (int32_t)x[c] * x[c]; /* <= 2^30 each */
        }
        /* C sum(x^2) <= C^2 2^30 < 2^54 */
        var = (int64_t)row_size * sum_sq - sum * sum + params->eps;
        if (var > 0) {
            inv = mq_inv_sqrt_q30(var, &k);
        }
        norm_shift = 30 + k - MQ_LAYERNORM_NORM_BITS; /* >= 10 */
        round = (int64_t)1 << (norm_shift - 1);
        for (c = 0; c < row_size; ++c) {
            const int64_t n = (int64_t)row_size * x[c] - sum; /* |n| < 2^28 */
            /* |n * inv| < 2^58; |z| <= sqrt(C) 2^20 < 2^27 */
            const int32_t z = (int32_t)((n * inv + round) >> norm_shift);
            const int32_t acc = mq_mbqm(z, quant->multiplier[c], quant->shift[c]) + bias[c];
            const int32_t v =
                mq_clamp(mq_rdbpot(acc, MQ_LAYERNORM_S16_OUT_BITS) + params->output_offset,
                         params->act_min, params->act_max);
            if (out8 != NULL) {
                out8[(int64_t)r * row_size + c] = (int8_t)v;
            } else {
                out16[(int64_t)r * row_size + c] = (int16_t)v;
            }
        }
    }
    return MQ_OK;
}

mq_status mq_layernorm_s16(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                           const int32_t *bias, int32_t rows, int32_t row_size,
                           const int16_t *input, int16_t *output)
{
    if (output == NULL) {
        return MQ_ERR_ARG;
    }
    return layernorm_s16(params, quant, bias, rows, row_size, input, output, NULL);
}

mq_status mq_layernorm_s16_s8(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                              const int32_t *bias, int32_t rows, int32_t row_size,
                              const int16_t *input, int8_t *output)
{
    if (output == NULL) {
        return MQ_ERR_ARG;
    }
    return layernorm_s16(params, quant, bias, rows, row_size, input, NULL, output);
}

/* ---- pooling ------------------------------------------------------------------------------ */

static mq_status pool_s16(const mq_pool_params *p, const mq_dims *in, const int16_t *input,
                          const mq_dims *f, const mq_dims *out, int16_t *output, int average)
{
    int32_t n, oy, ox, ky, kx, c;
    if (!p || !in || !input || !f || !out || !output || in->n <= 0 || in->h <= 0 || in->w <= 0 ||
        in->c <= 0 || out->h <= 0 || out->w <= 0 || f->h <= 0 || f->w <= 0 || p->stride_h <= 0 ||
        p->stride_w <= 0 || out->n != in->n || out->c != in->c || !act_ok(p->act_min, p->act_max) ||
        p->input_offset != 0 || p->output_offset != 0 || p->pad_top < 0 || p->pad_left < 0 ||
        p->pad_top >= f->h || p->pad_left >= f->w ||
        (out->h - 1) * p->stride_h - p->pad_top >= in->h ||
        (out->w - 1) * p->stride_w - p->pad_left >= in->w || f->h * f->w > 65536 ||
        (p->count_include_pad && (p->pad_bottom < 0 || p->pad_right < 0))) {
        return MQ_ERR_ARG; /* every window has an in-image tap; sums fit int32 */
    }
    for (n = 0; n < out->n; ++n) {
        for (oy = 0; oy < out->h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            const int32_t ky0 = y0 < 0 ? -y0 : 0;
            const int32_t ky1 = in->h - y0 < f->h ? in->h - y0 : f->h;
            for (ox = 0; ox < out->w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t kx0 = x0 < 0 ? -x0 : 0;
                const int32_t kx1 = in->w - x0 < f->w ? in->w - x0 : f->w;
                int32_t count = (ky1 - ky0) * (kx1 - kx0);
                if (p->count_include_pad) {
                    const int32_t hy =
                        (y0 + f->h < in->h + p->pad_bottom ? y0 + f->h : in->h + p->pad_bottom);
                    const int32_t hx =
                        (x0 + f->w < in->w + p->pad_right ? x0 + f->w : in->w + p->pad_right);
                    count = (hy - y0) * (hx - x0);
                }
                for (c = 0; c < in->c; ++c) {
                    int32_t acc = average ? 0 : MQ_S16_MIN;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int16_t *row =
                            input + (((int64_t)n * in->h + y0 + ky) * in->w + x0) * in->c + c;
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t v = row[(int64_t)kx * in->c];
                            if (average) {
                                acc += v;
                            } else if (v > acc) {
                                acc = v;
                            }
                        }
                    }
                    if (average) { /* half away from zero, C division truncates */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    output[(((int64_t)n * out->h + oy) * out->w + ox) * out->c + c] =
                        (int16_t)mq_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
    return MQ_OK;
}

mq_status mq_max_pool_s16(const mq_pool_params *params, const mq_dims *input_dims,
                          const int16_t *input, const mq_dims *filter_dims,
                          const mq_dims *output_dims, int16_t *output)
{
    return pool_s16(params, input_dims, input, filter_dims, output_dims, output, 0);
}

mq_status mq_avg_pool_s16(const mq_pool_params *params, const mq_dims *input_dims,
                          const int16_t *input, const mq_dims *filter_dims,
                          const mq_dims *output_dims, int16_t *output)
{
    return pool_s16(params, input_dims, input, filter_dims, output_dims, output, 1);
}
