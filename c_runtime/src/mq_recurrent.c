/* microq runtime: int8 LSTM / GRU. See mq_recurrent.h and python/microq/ref/recurrent.py. */
#include "mq_recurrent.h"
#include "mq_sigmoid_table.h"

#include "mq_dsp.h"
#include "mq_requant.h"

#define PART_LIMIT 65536
#define GATE_FRAC 12

static int32_t sat16(int32_t v)
{
    return mq_clamp(v, -32768, 32767);
}

/* The table at Q3.12 x, interpolated between entries (u >> 7) and (u >> 7) + 1. */
static int32_t lut16(const int16_t *t, int32_t x)
{
    const int32_t u = x + 32768;
    const int32_t i = u >> 7;
    const int32_t f = u & 127;
    const int32_t a = t[i];
    return a + (((t[i + 1] - a) * f + 64) >> 7);
}

/* MBQM(bias_x + sum (x + offset) * W) of gate row `row` (input side). */
static int32_t part_x(const mq_recurrent_params *p, int32_t row, const int8_t *x)
{
    const int8_t *w = p->input_weights + (size_t)row * (size_t)p->input_size;
    int32_t acc = p->input_bias[row];
    int32_t k;
    for (k = 0; k < p->input_size; ++k) {
        acc += ((int32_t)x[k] + p->input_offset) * (int32_t)w[k];
    }
    return mq_mbqm(acc, p->input_multiplier[row], p->input_shift[row]);
}

/* Likewise on the recurrent side; h == NULL (t = 0) is the zero state. */
static int32_t part_h(const mq_recurrent_params *p, int32_t row, const int8_t *h)
{
    int32_t acc = p->recurrent_bias[row];
    if (h != NULL) {
        const int8_t *r = p->recurrent_weights + (size_t)row * (size_t)p->hidden_size;
        int32_t k;
        for (k = 0; k < p->hidden_size; ++k) {
            acc += ((int32_t)h[k] + p->hidden_offset) * (int32_t)r[k];
        }
    }
    return mq_mbqm(acc, p->recurrent_multiplier[row], p->recurrent_shift[row]);
}

static int32_t gate(const mq_recurrent_params *p, int32_t row, const int8_t *x, const int8_t *h)
{
    const int32_t a = mq_clamp(part_x(p, row, x), -PART_LIMIT, PART_LIMIT);
    const int32_t b = mq_clamp(part_h(p, row, h), -PART_LIMIT, PART_LIMIT);
    return sat16(a + b);
}

/* The four LSTM gate pre-activations of unit j (rows j + g * hidden): one pass over x and h
 * feeds the four rows (mq_dot_1x4: each load shared, SMLAD on the DSP cores). */
static void lstm_gates(const mq_recurrent_params *p, int32_t j, const int8_t *x, const int8_t *h,
                       int32_t *pre)
{
    const int32_t hs = p->hidden_size;
    int32_t ax[4], ah[4];
    int32_t g;
    for (g = 0; g < 4; ++g) {
        ax[g] = p->input_bias[g * hs + j];
        ah[g] = p->recurrent_bias[g * hs + j];
    }
    mq_dot_1x4(x, p->input_weights + (size_t)j * (size_t)p->input_size, hs * p->input_size,
               p->input_size, p->input_offset, ax);
    if (h != NULL) {
        mq_dot_1x4(h, p->recurrent_weights + (size_t)j * (size_t)hs, hs * hs, hs, p->hidden_offset,
                   ah);
    }
    for (g = 0; g < 4; ++g) {
        const int32_t row = g * hs + j;
        const int32_t a = mq_clamp(mq_mbqm(ax[g], p->input_multiplier[row], p->input_shift[row]),
                                   -PART_LIMIT, PART_LIMIT);
        const int32_t b =
            mq_clamp(mq_mbqm(ah[g], p->recurrent_multiplier[row], p->recurrent_shift[row]),
                     -PART_LIMIT, PART_LIMIT);
        pre[g] = sat16(a + b);
    }
}

static int check(const mq_recurrent_params *p, int32_t steps, const int8_t *input,
                 const int8_t *output, const int16_t *state)
{
    return p != NULL && input != NULL && output != NULL && state != NULL && steps > 0 &&
           p->input_size > 0 && p->hidden_size > 0 && p->input_weights != NULL &&
           p->recurrent_weights != NULL && p->input_bias != NULL && p->recurrent_bias != NULL &&
           p->input_multiplier != NULL && p->input_shift != NULL &&
           p->recurrent_multiplier != NULL && p->recurrent_shift != NULL &&
           p->sigmoid_table != NULL && p->tanh_table != NULL;
}

mq_status mq_lstm_s8(const mq_recurrent_params *params, int32_t steps, const int8_t *input,
                     int8_t *output, int16_t *state)
{
    int32_t t, j;
    int32_t hs;
    if (!check(params, steps, input, output, state) || params->cell_shift < 0 ||
        params->cell_shift > 15) {
        return MQ_ERR_ARG;
    }
    hs = params->hidden_size;
    for (j = 0; j < hs; ++j) {
        state[j] = 0;
    }
    for (t = 0; t < steps; ++t) {
        const int32_t at = params->reverse ? steps - 1 - t : t;
        const int32_t prev = params->reverse ? at + 1 : at - 1;
        const int8_t *x = input + (size_t)at * (size_t)params->input_size;
        const int8_t *h = t > 0 ? output + (size_t)prev * (size_t)hs : NULL;
        int8_t *y = output + (size_t)at * (size_t)hs;
        for (j = 0; j < hs; ++j) {
            const int32_t cs = params->cell_shift;
            int32_t pre[4];
            int32_t ig, og, fg, cg, c, tin;
            lstm_gates(params, j, x, h, pre);
            ig = lut16(params->sigmoid_table, pre[0]);
            og = lut16(params->sigmoid_table, pre[1]);
            fg = lut16(params->sigmoid_table, pre[2]);
            cg = lut16(params->tanh_table, pre[3]);
            c = sat16(mq_rdbpot(fg * (int32_t)state[j], 15) + mq_rdbpot(ig * cg, 30 - cs));
            state[j] = (int16_t)c;
            if (cs >= GATE_FRAC) {
                tin = mq_rdbpot(c, cs - GATE_FRAC);
            } else {
                tin = sat16(c * ((int32_t)1 << (GATE_FRAC - cs)));
            }
            y[j] = (int8_t)mq_clamp(mq_mbqm(og * lut16(params->tanh_table, tin),
                                            params->output_multiplier, params->output_shift) +
                                        params->output_offset,
                                    -128, 127);
        }
    }
    return MQ_OK;
}

/* One step of a reset_first GRU (linear_before_reset = 0): r * h16 for every unit first
 * (state[hs..2hs)), then z, n = tanh(Wn x + Rn (r * h16) + biases) and h16 per unit. */
static void gru_reset_first_step(const mq_recurrent_params *p, const int8_t *x, const int8_t *h,
                                 int8_t *y, int16_t *state)
{
    const int32_t hs = p->hidden_size;
    int16_t *rh = state + hs;
    int32_t j, k;
    for (j = 0; j < hs; ++j) {
        const int32_t r = lut16(p->sigmoid_table, gate(p, hs + j, x, h));
        rh[j] = (int16_t)mq_rdbpot(r * (int32_t)state[j], 15);
    }
    for (j = 0; j < hs; ++j) {
        const int32_t row = 2 * hs + j;
        const int8_t *w = p->recurrent_weights + (size_t)row * (size_t)hs;
        const int32_t z = lut16(p->sigmoid_table, gate(p, j, x, h));
        const int32_t xn = mq_clamp(part_x(p, row, x), -PART_LIMIT, PART_LIMIT);
        int32_t acc = p->recurrent_bias[row];
        int32_t hn, n, hnew;
        for (k = 0; k < hs; ++k) {
            acc += (int32_t)rh[k] * (int32_t)w[k];
        }
        hn = mq_clamp(mq_mbqm(acc, p->recurrent_multiplier[row], p->recurrent_shift[row]),
                      -PART_LIMIT, PART_LIMIT);
        n = lut16(p->tanh_table, sat16(xn + hn));
        hnew = mq_rdbpot((32768 - z) * n + z * (int32_t)state[j], 15);
        state[j] = (int16_t)hnew;
        y[j] = (int8_t)mq_clamp(
            mq_mbqm(hnew, p->output_multiplier, p->output_shift) + p->output_offset, -128, 127);
    }
}

mq_status mq_gru_s8(const mq_recurrent_params *params, int32_t steps, const int8_t *input,
                    int8_t *output, int16_t *state)
{
    int32_t t, j;
    int32_t hs;
    if (!check(params, steps, input, output, state)) {
        return MQ_ERR_ARG;
    }
    hs = params->hidden_size;
    for (j = 0; j < hs; ++j) {
        state[j] = 0;
    }
    for (t = 0; t < steps; ++t) {
        const int32_t at = params->reverse ? steps - 1 - t : t;
        const int32_t prev = params->reverse ? at + 1 : at - 1;
        const int8_t *x = input + (size_t)at * (size_t)params->input_size;
        const int8_t *h = t > 0 ? output + (size_t)prev * (size_t)hs : NULL;
        int8_t *y = output + (size_t)at * (size_t)hs;
        if (params->reset_first) {
            gru_reset_first_step(params, x, h, y, state);
            continue;
        }
        for (j = 0; j < hs; ++j) {
            const int32_t z = lut16(params->sigmoid_table, gate(params, j, x, h));
            const int32_t r = lut16(params->sigmoid_table, gate(params, hs + j, x, h));
            const int32_t hn = sat16(part_h(params, 2 * hs + j, h));
            const int32_t xn = mq_clamp(part_x(params, 2 * hs + j, x), -PART_LIMIT, PART_LIMIT);
            const int32_t n = lut16(params->tanh_table, sat16(xn + mq_rdbpot(r * hn, 15)));
            const int32_t hnew = mq_rdbpot((32768 - z) * n + z * (int32_t)state[j], 15);
            state[j] = (int16_t)hnew;
            y[j] = (int8_t)mq_clamp(mq_mbqm(hnew, params->output_multiplier, params->output_shift) +
                                        params->output_offset,
                                    -128, 127);
        }
    }
    return MQ_OK;
}

/* ---- TFLite UNIDIRECTIONAL_SEQUENCE_LSTM (TFLite Micro's integer LstmStep) ---------------- */

/* x * (3 << s) for s >= 0, (3x + 2^(-s-1)) >> -s otherwise (|x| <= 2^15, s <= 14). */
static int32_t tfl_scaled(int32_t x, int32_t left_shift)
{
    if (left_shift >= 0) {
        return x * ((int32_t)3 << left_shift);
    }
    return (x * 3 + ((int32_t)1 << (-left_shift - 1))) >> -left_shift;
}

/* |v| read from the table at 2^frac steps, interpolated; 0x7FFF << 10 / 0xFFFF << 8 beyond. */
static uint32_t tfl_lookup(uint32_t a, int32_t frac, uint32_t saturated)
{
    const uint32_t uh = a >> frac;
    uint32_t ua, ub;
    if (uh >= 255u) {
        return saturated;
    }
    ua = mq_tfl_sigmoid_table[uh];
    ub = mq_tfl_sigmoid_table[uh + 1u];
    return (ua << frac) + (a & ((1u << frac) - 1u)) * (ub - ua);
}

static int32_t tfl_sigmoid(int32_t x, int32_t left_shift)
{
    const int32_t v = tfl_scaled(x, left_shift);
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t r = tfl_lookup(a, 9, 0x7FFFu << 10);
    return (int32_t)((v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u) >> 10);
}

static int32_t tfl_tanh(int32_t x, int32_t left_shift)
{
    const int32_t v = tfl_scaled(x, left_shift);
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const int32_t r = (int32_t)tfl_lookup(a, 8, 0xFFFFu << 8);
    /* arithmetic shift of a possibly negative value, as mq_rdbpot relies on */
    return (v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1) >> 8;
}

mq_status mq_tfl_sigmoid_s16(const int16_t *input, int16_t *output, int32_t n, int32_t left_shift)
{
    int32_t k;
    if (input == NULL || output == NULL || n < 0 || left_shift < -14 || left_shift > 12) {
        return MQ_ERR_ARG;
    }
    for (k = 0; k < n; ++k) {
        output[k] = (int16_t)tfl_sigmoid(input[k], left_shift);
    }
    return MQ_OK;
}

mq_status mq_tfl_tanh_s16(const int16_t *input, int16_t *output, int32_t n, int32_t left_shift)
{
    int32_t k;
    if (input == NULL || output == NULL || n < 0 || left_shift < -17 || left_shift > 12) {
        return MQ_ERR_ARG;
    }
    for (k = 0; k < n; ++k) {
        output[k] = (int16_t)tfl_tanh(input[k], left_shift);
    }
    return MQ_OK;
}

/* sat16(FC_x) + sat16(FC_h), saturated: the four gate pre-activations (Q3.12) of unit j, one
 * pass over x and h for the four rows (as lstm_gates). */
static void tfl_gates(const mq_lstm_tfl_params *p, int32_t j, const int8_t *x, const int8_t *h,
                      int32_t *pre)
{
    const int32_t hs = p->hidden_size;
    int32_t ax[4], ah[4];
    int32_t g;
    for (g = 0; g < 4; ++g) {
        ax[g] = p->input_bias[g * hs + j];
        ah[g] = 0;
    }
    mq_dot_1x4(x, p->input_weights + (size_t)j * (size_t)p->input_size, hs * p->input_size,
               p->input_size, p->input_offset, ax);
    if (h != NULL) {
        mq_dot_1x4(h, p->recurrent_weights + (size_t)j * (size_t)hs, hs * hs, hs, p->hidden_offset,
                   ah);
    }
    for (g = 0; g < 4; ++g) {
        pre[g] = sat16(sat16(mq_mbqm(ax[g], p->input_multiplier[g], p->input_shift[g])) +
                       sat16(mq_mbqm(ah[g], p->recurrent_multiplier[g], p->recurrent_shift[g])));
    }
}

mq_status mq_lstm_tfl_s8(const mq_lstm_tfl_params *params, int32_t steps, const int8_t *input,
                         int8_t *output, int16_t *state)
{
    const mq_lstm_tfl_params *p = params;
    int32_t t, j, hs;
    if (p == NULL || input == NULL || output == NULL || state == NULL || steps <= 0 ||
        p->input_size <= 0 || p->hidden_size <= 0 || p->input_weights == NULL ||
        p->recurrent_weights == NULL || p->input_bias == NULL || p->input_multiplier == NULL ||
        p->input_shift == NULL || p->recurrent_multiplier == NULL || p->recurrent_shift == NULL ||
        p->cell_shift < 0 || p->cell_shift > 29 || p->cell_clip < 0 || p->cell_clip > 32767) {
        return MQ_ERR_ARG;
    }
    hs = p->hidden_size;
    for (j = 0; j < hs; ++j) {
        state[j] = 0;
    }
    for (t = 0; t < steps; ++t) {
        const int8_t *x = input + (size_t)t * (size_t)p->input_size;
        const int8_t *h = t > 0 ? output + (size_t)(t - 1) * (size_t)hs : NULL;
        int8_t *y = output + (size_t)t * (size_t)hs;
        for (j = 0; j < hs; ++j) {
            int32_t pre[4];
            int32_t ig, og, fg, cg, c;
            tfl_gates(p, j, x, h, pre);
            ig = tfl_sigmoid(pre[0], 0);
            og = tfl_sigmoid(pre[1], 0);
            fg = tfl_sigmoid(pre[2], 0);
            cg = tfl_tanh(pre[3], 0);
            c = sat16(
                sat16(mq_mbqm(fg * (int32_t)state[j], p->forget_multiplier, p->forget_shift)) +
                sat16(mq_mbqm(ig * cg, p->update_multiplier, p->update_shift)));
            if (p->cell_clip > 0) {
                c = mq_clamp(c, -p->cell_clip, p->cell_clip);
            }
            state[j] = (int16_t)c;
            y[j] = (int8_t)mq_clamp(mq_mbqm(tfl_tanh(c, GATE_FRAC - p->cell_shift) * og,
                                            p->output_multiplier, p->output_shift) +
                                        p->output_offset,
                                    -128, 127);
        }
    }
    return MQ_OK;
}
