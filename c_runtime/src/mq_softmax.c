/* microq runtime: int8 softmax, bit-exact with TFLite Micro's reference (and CMSIS-NN).
 *
 * Fixed-point numbers are gemmlowp's FixedPoint<int32_t, I>: a raw int32 with I integer bits
 * and 31 - I fractional bits, written QI.(31-I). The input differences are rescaled to Q5.26,
 * exp() of them is Q0.31, their sum is accumulated in Q12.19. */
#include "mq_dsp.h"
#include "mq_requant.h"
#include "mq_softmax.h"

#define MQ_SOFTMAX_ACCUM_BITS 12

/* Rows up to this length keep their exp() values (256 bytes of stack) from the sum pass for the
 * output pass instead of computing them twice. */
#define MQ_SOFTMAX_CACHE 64

/* The multiplier is capped at 2^31 - 1 (2^30 - 1 with single rounding, whose MBQM takes shifts
 * up to 30), as TFLite's PreprocessSoftmaxScaling does. */
#if MQ_SINGLE_ROUNDING
#define MQ_SOFTMAX_MAX_LEFT_SHIFT 30
#else
#define MQ_SOFTMAX_MAX_LEFT_SHIFT 31
#endif

/* gemmlowp SaturatingRoundingMultiplyByPOT<e> for 0 < e < 31: a saturating left shift. */
static int32_t sat_shl(int32_t x, int32_t e)
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: exp(-1/8) * (1 + x + x^2/2 + x^3/6 + x^4/24)
 * with x = a + 1/8. */
static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = a + ((int32_t)1 << 28);    /* a + 1/8, in [-1/8, 1/8) */
    const int32_t x2 = mq_srdhm(x, x);
    const int32_t x3 = mq_srdhm(x2, x);
    const int32_t x4 = mq_srdhm(x2, x2);
    const int32_t x4_over_4 = mq_rdbpot(x4, 2);
    const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 =
        mq_rdbpot(mq_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + mq_srdhm(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2);
}

/* exp(a) for a <= 0: a is Q5.26, the result Q0.31. a = -(k/4) - r with r in (0, 1/4]: the
 * series handles -r, then each set bit of k/4 (2^-2 .. 2^4) multiplies in exp(-2^j). */
static int32_t exp_on_negative_values(int32_t a)
{
    static const int32_t exp_of_minus_pow2[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1) */
        290630308,  /* exp(-2) */
        39332535,   /* exp(-4) */
        720401,     /* exp(-8) */
        242         /* exp(-16) */
    };
    const int32_t one_quarter = (int32_t)1 << 24;
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    /* Q5.26 -> Q0.31 is a left shift by 5; |value| <= 2^24 so it cannot saturate. */
    int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        a_mod_quarter_minus_one_quarter * 32);
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    int32_t j;
    for (j = 0; j < 7; ++j) {
        if (remainder & ((int32_t)1 << (24 + j))) {
            result = mq_srdhm(result, exp_of_minus_pow2[j]);
        }
    }
    /* Differences beyond -32 are flushed by diff_min before they get here. */
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1): Q0.31 in and out. Newton-Raphson on the half denominator in
 * Q2.29, three iterations from the start value 48/17 - 32/17 * d. */
static int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t one_q2_29 = (int32_t)1 << 29;
    /* gemmlowp RoundingHalfSum(a, 1.0): (a + INT32_MAX) / 2 rounded away from zero; the sum is
     * positive here. */
    const int32_t half_denominator = (int32_t)(((int64_t)a + INT32_MAX + 1) / 2);
    int32_t x = constant_48_over_17 + mq_srdhm(half_denominator, constant_neg_32_over_17);
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = mq_srdhm(half_denominator, x);
        const int32_t one_minus_half_denominator_times_x = one_q2_29 - half_denominator_times_x;
        /* Q2.29 * Q2.29 = Q4.27, rescaled back to Q2.29. */
        x = x + sat_shl(mq_srdhm(x, one_minus_half_denominator_times_x), 2);
    }
    /* x ~ 1 / half_denominator in Q2.29; the result is x / 2 as Q0.31. */
    return sat_shl(x, 1);
}

static int32_t count_leading_zeros(uint32_t x)
{
    int32_t n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* The input difference (int8 steps, <= 0) scaled by beta * input_scale, as Q5.26. */
static inline int32_t rescale_diff(const mq_softmax_params *params, int32_t diff)
{
#if MQ_SINGLE_ROUNDING
    return mq_mbqm(diff, params->input_multiplier, params->input_left_shift);
#else
    /* TFLite's MultiplyByQuantizedMultiplierGreaterThanOne. diff >= diff_min guarantees
     * |diff| * 2^left_shift <= 31 * 2^26 < 2^31; the product is formed in int64 only because
     * left_shift may be 31 (then diff_min is 0 and diff is 0). */
    return mq_srdhm((int32_t)((int64_t)diff * ((int64_t)1 << params->input_left_shift)),
                    params->input_multiplier);
#endif
}

/* One softmax row; with `mask` (the row's keep bytes) a key whose byte is 0 is left out of the
 * max and the sum and gets probability 0 (-128), as if its logit were -inf. Always inlined, so
 * the unmasked call (mask NULL, a constant) has the tests folded away. */
static MQ_ALWAYS_INLINE void softmax_row_any(const mq_softmax_params *params, int32_t row_size,
                                             const uint8_t *mask, const int8_t *input,
                                             int8_t *output)
{
    int32_t max_in_row = -128;
    int32_t sum_of_exps = 0; /* Q12.19 */
    int32_t headroom_plus_one;
    int32_t num_bits_over_unit;
    int32_t shifted_scale;
    int32_t exponent;
    int32_t c;
    int32_t exps[MQ_SOFTMAX_CACHE];
    const int cached = row_size <= MQ_SOFTMAX_CACHE;

    for (c = 0; c < row_size; ++c) {
        if (!mask || mask[c]) {
            max_in_row = input[c] > max_in_row ? input[c] : max_in_row;
        }
    }
    /* Each term is at most 1.0 = 2^19 in Q12.19, so row_size <= 4095 cannot overflow. */
    for (c = 0; c < row_size; ++c) {
        const int32_t diff = (int32_t)input[c] - max_in_row;
        if ((!mask || mask[c]) && diff >= params->diff_min) {
            const int32_t e = exp_on_negative_values(rescale_diff(params, diff));
            if (cached) {
                exps[c] = e;
            }
            sum_of_exps += mq_rdbpot(e, MQ_SOFTMAX_ACCUM_BITS); /* Q0.31 -> Q12.19 */
        }
    }
    if (sum_of_exps == 0) {
        /* Every entry below diff_min (only when diff_min > 0), or every key masked. */
        for (c = 0; c < row_size; ++c) {
            output[c] = -128;
        }
        return;
    }
    /* 1/sum: normalize sum to 1 + x with x in [0, 1) and take the reciprocal there. */
    headroom_plus_one = count_leading_zeros((uint32_t)sum_of_exps);
    num_bits_over_unit = MQ_SOFTMAX_ACCUM_BITS - headroom_plus_one;
    shifted_scale = one_over_one_plus_x_for_x_in_0_1(
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - 0x80000000u));
    /* Q0.31 probability -> 1/256 steps. */
    exponent = num_bits_over_unit + 31 - 8;
    for (c = 0; c < row_size; ++c) {
        const int32_t diff = (int32_t)input[c] - max_in_row;
        int32_t out = -128;
        if ((!mask || mask[c]) && diff >= params->diff_min) {
            const int32_t e = cached ? exps[c] : exp_on_negative_values(rescale_diff(params, diff));
            const int32_t prob = mq_srdhm(shifted_scale, e);
            /* exponent > 31 only when sum >= 2^28 (exps summing to >= 512): then
             * prob < 2^31 is below half of 2^exponent and rounds to 0. */
            const int32_t unsat = exponent > 31 ? 0 : mq_rdbpot(prob, exponent);
            out = mq_clamp(unsat - 128, -128, 127);
        }
        output[c] = (int8_t)out;
    }
}

static void softmax_row(const mq_softmax_params *params, int32_t row_size, const int8_t *input,
                        int8_t *output)
{
    softmax_row_any(params, row_size, NULL, input, output);
}

static void softmax_row_masked(const mq_softmax_params *params, int32_t row_size,
                               const uint8_t *mask, const int8_t *input, int8_t *output)
{
    softmax_row_any(params, row_size, mask, input, output);
}

static int params_ok(const mq_softmax_params *params, int32_t rows, int32_t row_size)
{
    /* The diff_min test is what keeps rescale_diff inside int32 (see there). */
    return !(rows < 0 || row_size < 0 || row_size > 4095 || params->input_left_shift < 0 ||
             params->input_left_shift > MQ_SOFTMAX_MAX_LEFT_SHIFT || params->input_multiplier < 0 ||
             (params->diff_min < 0 &&
              (int64_t)params->diff_min * ((int64_t)1 << params->input_left_shift) < INT32_MIN));
}

mq_status mq_softmax_s8(const mq_softmax_params *params, int32_t rows, int32_t row_size,
                        const int8_t *input, int8_t *output)
{
    int32_t r;
    /* The diff_min test is what keeps rescale_diff inside int32 (see there). */
    if (rows < 0 || row_size < 0 || row_size > 4095 || params->input_left_shift < 0 ||
        params->input_left_shift > MQ_SOFTMAX_MAX_LEFT_SHIFT || params->input_multiplier < 0 ||
        (params->diff_min < 0 &&
         (int64_t)params->diff_min * ((int64_t)1 << params->input_left_shift) < INT32_MIN)) {
        return MQ_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        softmax_row(params, row_size, input + r * row_size, output + r * row_size);
    }
    return MQ_OK;
}

mq_status mq_softmax_masked_s8(const mq_softmax_params *params, int32_t rows, int32_t row_size,
                               int32_t mask_rows, const uint8_t *mask, const int8_t *input,
                               int8_t *output)
{
    int32_t r;
    int32_t m = 0;
    if (!params_ok(params, rows, row_size) || mask == 0 || mask_rows < 1 ||
        (rows > 0 && rows % mask_rows != 0)) {
        return MQ_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        softmax_row_masked(params, row_size, mask + m * row_size, input + r * row_size,
                           output + r * row_size);
        m = m + 1 == mask_rows ? 0 : m + 1;
    }
    return MQ_OK;
}
