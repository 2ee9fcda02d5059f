/* microq runtime: int8 LSTM and GRU layers (forward, batch 1, zero initial state), integer
 * only as TFLite Micro's int8 LSTM: int8 weights and activations, int16 gate pre-activations
 * (Q3.12) and state, sigmoid / tanh by 513-entry int16 tables (Q3.12 -> Q0.15, linear
 * interpolation). The exact arithmetic is python/microq/ref/recurrent.py.
 *
 * This header is cdef-clean. */
#ifndef MQ_RECURRENT_H
#define MQ_RECURRENT_H

#include "mq_types.h"

#define MQ_RECURRENT_LUT_SIZE 513

/* Gate rows (ONNX order): LSTM i, o, f, c; GRU z, r, h; each hidden_size rows. */
typedef struct {
    int32_t input_size;
    int32_t hidden_size;
    int32_t input_offset;  /* -x zero point */
    int32_t hidden_offset; /* -h zero point: h[t-1] is the previous output row */
    int32_t output_offset; /* +h zero point */
    int32_t cell_shift;    /* LSTM: cell state int16 = c * 2^cell_shift, 0..15 */
    int32_t output_multiplier;
    int32_t output_shift;
    const int8_t *input_weights;     /* [gates * hidden, input] */
    const int8_t *recurrent_weights; /* [gates * hidden, hidden] */
    const int32_t *input_bias;       /* [gates * hidden] */
    const int32_t *recurrent_bias;   /* [gates * hidden] */
    const int32_t *input_multiplier; /* [gates * hidden] */
    const int32_t *input_shift;      /* [gates * hidden] */
    const int32_t *recurrent_multiplier;
    const int32_t *recurrent_shift;
    const int16_t *sigmoid_table; /* [MQ_RECURRENT_LUT_SIZE] */
    const int16_t *tanh_table;    /* [MQ_RECURRENT_LUT_SIZE] */
    /* GRU linear_before_reset = 0 (1 here): the n rows' recurrent matmul reads r * h16
     * (Q0.15, no offset); state then holds 2 * hidden_size int16 (h16, r * h16) */
    int32_t reset_first;
    /* 1: the steps run from the last to the first (ONNX direction "reverse"); output rows stay
     * in step order, h[t + 1] feeds step t */
    int32_t reverse;
} mq_recurrent_params;

/* input [steps, input_size] int8 -> output [steps, hidden_size] int8 (every step's h);
 * state: hidden_size int16 of scratch (the LSTM cell state / the GRU's Q0.15 h), overwritten. */
mq_status mq_lstm_s8(const mq_recurrent_params *params, int32_t steps, const int8_t *input,
                     int8_t *output, int16_t *state);
mq_status mq_gru_s8(const mq_recurrent_params *params, int32_t steps, const int8_t *input,
                    int8_t *output, int16_t *state);

/* TFLite's int8x8_16 UNIDIRECTIONAL_SEQUENCE_LSTM as TFLite Micro's integer LstmStep computes
 * it (python/microq/ref/recurrent.py lstm_tfl): the gate matmuls as above but with one rescale
 * per gate and no recurrent bias (pre-activations saturated to int16 per side and summed),
 * TFLite's int16 Logistic and
 * Tanh (the 256-entry sigmoid(k / 24) table, mq_recurrent.c), the cell at scale
 * 2^-cell_shift updated by two rescaled int16 products and clipped to +-cell_clip (0: none),
 * h = y = tanh(c) * o rescaled to int8. Gate rows i, o, f, c. */
typedef struct {
    int32_t input_size;
    int32_t hidden_size;
    int32_t input_offset;
    int32_t hidden_offset;
    int32_t output_offset;
    int32_t cell_shift; /* 0..29 */
    int32_t cell_clip;  /* 0..32767 */
    int32_t forget_multiplier;
    int32_t forget_shift;
    int32_t update_multiplier;
    int32_t update_shift;
    int32_t output_multiplier;
    int32_t output_shift;
    const int8_t *input_weights;         /* [4 * hidden, input] */
    const int8_t *recurrent_weights;     /* [4 * hidden, hidden] */
    const int32_t *input_bias;           /* [4 * hidden] */
    const int32_t *input_multiplier;     /* [4], one per gate */
    const int32_t *input_shift;          /* [4] */
    const int32_t *recurrent_multiplier; /* [4] */
    const int32_t *recurrent_shift;      /* [4] */
} mq_lstm_tfl_params;

/* As mq_lstm_s8; state: hidden_size int16 (the cell state), overwritten. */
mq_status mq_lstm_tfl_s8(const mq_lstm_tfl_params *params, int32_t steps, const int8_t *input,
                         int8_t *output, int16_t *state);

/* TFLite's int16 Logistic / Tanh of n values (x * 3 << left_shift, or (3x + round) >>
 * -left_shift when negative; Q3.12 input at left_shift 0), Q0.15 out: the kernel's own. */
mq_status mq_tfl_sigmoid_s16(const int16_t *input, int16_t *output, int32_t n, int32_t left_shift);
mq_status mq_tfl_tanh_s16(const int16_t *input, int16_t *output, int32_t n, int32_t left_shift);

#endif /* MQ_RECURRENT_H */
