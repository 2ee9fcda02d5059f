/* microq runtime: int8 LSTM / GRU. See mq_recurrent.h and python/microq/ref/recurrent.py. */
#include "mq_recurrent.h"

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
        const int8_t *x = input + (size_t)t * (size_t)params->input_size;
        const int8_t *h = t > 0 ? output + (size_t)(t - 1) * (size_t)hs : NULL;
        int8_t *y = output + (size_t)t * (size_t)hs;
        for (j = 0; j < hs; ++j) {
            const int32_t ig = lut16(params->sigmoid_table, gate(params, j, x, h));
            const int32_t og = lut16(params->sigmoid_table, gate(params, hs + j, x, h));
            const int32_t fg = lut16(params->sigmoid_table, gate(params, 2 * hs + j, x, h));
            const int32_t cg = lut16(params->tanh_table, gate(params, 3 * hs + j, x, h));
            const int32_t cs = params->cell_shift;
            const int32_t c = sat16(mq_rdbpot(fg * (int32_t)state[j], 15) +
                                    mq_rdbpot(ig * cg, 30 - cs));
            int32_t tin;
            state[j] = (int16_t)c;
            if (cs >= GATE_FRAC) {
                tin = mq_rdbpot(c, cs - GATE_FRAC);
            } else {
                tin = sat16(c * ((int32_t)1 << (GATE_FRAC - cs)));
            }
            y[j] = (int8_t)mq_clamp(
                mq_mbqm(og * lut16(params->tanh_table, tin), params->output_multiplier,
                        params->output_shift) + params->output_offset, -128, 127);
        }
    }
    return MQ_OK;
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
        const int8_t *x = input + (size_t)t * (size_t)params->input_size;
        const int8_t *h = t > 0 ? output + (size_t)(t - 1) * (size_t)hs : NULL;
        int8_t *y = output + (size_t)t * (size_t)hs;
        for (j = 0; j < hs; ++j) {
            const int32_t z = lut16(params->sigmoid_table, gate(params, j, x, h));
            const int32_t r = lut16(params->sigmoid_table, gate(params, hs + j, x, h));
            const int32_t hn = sat16(part_h(params, 2 * hs + j, h));
            const int32_t xn = mq_clamp(part_x(params, 2 * hs + j, x), -PART_LIMIT, PART_LIMIT);
            const int32_t n = lut16(params->tanh_table, sat16(xn + mq_rdbpot(r * hn, 15)));
            const int32_t hnew = mq_rdbpot((32768 - z) * n + z * (int32_t)state[j], 15);
            state[j] = (int16_t)hnew;
            y[j] = (int8_t)mq_clamp(
                mq_mbqm(hnew, params->output_multiplier, params->output_shift) +
                params->output_offset, -128, 127);
        }
    }
    return MQ_OK;
}
