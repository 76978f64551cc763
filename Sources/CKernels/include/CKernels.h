// CKernels: the hot numeric loops of mambad, in C with runtime CPU dispatch.
//
// Everything here works on raw pointers into memory-mapped checkpoint data or
// caller-owned scratch. Nothing allocates, nothing knows about the model graph.
// Each matrix kernel takes a row range [row_begin, row_end) so that callers can
// split one product across threads.
#ifndef MAMBAD_CKERNELS_H
#define MAMBAD_CKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Element type of a dense weight matrix as stored in the checkpoint.
typedef enum {
    MK_DTYPE_F32 = 0,
    MK_DTYPE_F16 = 1,
    MK_DTYPE_BF16 = 2,
} mk_dtype;

/// How bitsandbytes rounds each decoded 4-bit weight (its quant_state "dtype").
typedef enum {
    MK_ROUND_NONE = 0,  // float32
    MK_ROUND_BF16 = 1,  // bfloat16, round to nearest even
    MK_ROUND_F16 = 2,   // float16, round to nearest even
} mk_rounding;

/// A row-major [rows, cols] dense matrix.
typedef struct {
    const void *data;
    int32_t dtype;  // mk_dtype
    int64_t rows;
    int64_t cols;
} mk_dense_matrix;

/// A row-major [rows, cols] bitsandbytes 4-bit matrix. The flattened weight is
/// cut into blocks of `blocksize` consecutive elements (blocks may span rows);
/// element e is table[code(e)] * absmax[e / blocksize], rounded per `rounding`.
/// Two codes a byte, the first element in the high nibble.
typedef struct {
    const uint8_t *codes;
    const float *absmax;
    float table[16];
    int64_t rows;
    int64_t cols;
    int64_t blocksize;
    int32_t rounding;  // mk_rounding
} mk_q4_matrix;

/// The instruction set the dispatcher picked: "avx512", "avx2" or "scalar".
const char *mk_isa(void);
/// Force a path (for tests and benchmarks): 0 = best available, 1 = scalar, 2 = avx2, 3 = avx512.
/// Returns 0 on success, -1 if the CPU lacks the requested instructions.
int mk_force_isa(int isa);

// ---------------------------------------------------------------- conversions

float mk_f16_to_f32(uint16_t h);
uint16_t mk_f32_to_f16(float f);          // round to nearest even
float mk_bf16_to_f32(uint16_t h);
float mk_round_bf16(float f);             // float -> nearest-even bfloat16, kept as float
float mk_round_f16(float f);              // float -> nearest-even float16, kept as float
/// dst[i] = float(src[i]) for `count` elements of `dtype`.
void mk_convert_to_f32(const void *src, int32_t dtype, int64_t count, float *dst);

// ------------------------------------------------------------ matrix kernels

/// y[r] = dot(W[r, :], x) for r in [row_begin, row_end); y is indexed by r.
void mk_dense_gemv(const mk_dense_matrix *w, const float *x, float *y,
                   int64_t row_begin, int64_t row_end);
void mk_q4_gemv(const mk_q4_matrix *w, const float *x, float *y,
                int64_t row_begin, int64_t row_end);

/// Several vectors at once, each weight decoded once: y[b * ldy + r] = dot(W[r, :], x + b * ldx)
/// for b in [0, batch), r in [row_begin, row_end). batch is at most MK_MAX_BATCH.
#define MK_MAX_BATCH 8
void mk_dense_gemv_batch(const mk_dense_matrix *w, const float *x, int64_t ldx, int64_t batch,
                         float *y, int64_t ldy, int64_t row_begin, int64_t row_end);
void mk_q4_gemv_batch(const mk_q4_matrix *w, const float *x, int64_t ldx, int64_t batch,
                      float *y, int64_t ldy, int64_t row_begin, int64_t row_end);

// ------------------------------------------- int8 fast path (approximate)
//
// The fast path multiplies int8 activations (each block of 64 quantized with its own
// scale) with weights repacked once at load into panels of 16 rows (AVX-512 VNNI
// vpdpbusd, 16 rows x 4 columns per instruction; AVX2 emulates it with vpmaddubsw). 4-bit weights keep their codes and
// map them to int8 through a 16-entry table; dense weights (the lm_head) become int8
// per row and block of 64. Not bit-exact with bitsandbytes: see docs/performance.md.

/// Activation rows quantized to int8: q[t * cols + k]; per block of 64:
/// scale[t * blocks + b] and neg_corr[t * blocks + b] = -128 * the block's sum of q.
typedef struct {
    int8_t *q;
    float *scale;
    int32_t *neg_corr;
    int64_t rows;
    int64_t cols;
} mk_q8_rows;

int64_t mk_q8_rows_bytes(int64_t rows, int64_t cols);
/// Lay out mk_q8_rows in `memory` (mk_q8_rows_bytes bytes; aligned to 64 inside).
mk_q8_rows mk_q8_rows_in(void *memory, int64_t rows, int64_t cols);
void mk_q8_quantize_rows(const float *x, int64_t ldx, mk_q8_rows *out);
/// Blocks [block_begin, block_end) of every row.
void mk_q8_quantize_blocks(const float *x, int64_t ldx, mk_q8_rows *out, int64_t block_begin, int64_t block_end);

/// The quantization of one decode product's activations, shared by the threads that run
/// it: the blocks are cut into one part a thread, and thread i quantizes part i (the
/// channels it computed itself when the previous product's epilogue wrote them), then
/// any part nobody has claimed yet, then waits for the parts others claimed. So the
/// caller's thread does not quantize alone while the pool waits, each thread reads
/// mostly from its own cache, and a thread that has not started yet (descheduled) holds
/// nobody up: its part is claimed by whoever gets there first. Zero-initialize, then
/// every thread of the job calls mk_q8_quantize_shared once.
typedef struct { uint64_t claimed; int64_t done; } mk_q8_claims;
void mk_q8_quantize_shared(const float *x, int64_t ldx, mk_q8_rows *out, mk_q8_claims *claims, int thread, int threads);

/// The int8 weight table: lut[i] = round(table[i] * multiplier) + 128 (as unsigned),
/// with the multiplier (at most 127 / max|table|) that represents the table best.
/// Returns 1 / multiplier.
float mk_q8_lut(const float table[16], uint8_t lut[16]);

/// Whether a vector int8 kernel runs here (AVX-512 VNNI, or AVX2 emulating it), given
/// the path mk_force_isa allows; and which: "avx512-vnni", "avx2" or "scalar".
int mk_q8_available(void);
const char *mk_q8_path(void);
/// Whether the AVX-512 path may decode 4-bit codes with vpermb (AVX-512 VBMI) where the
/// CPU has it ("avx512-vnni-vbmi"); 0 keeps vpshufb ("avx512-vnni"). The results are the
/// same. Default: allowed, unless MAMBAD_VBMI=0.
void mk_q8_allow_vbmi(int allowed);

/// A matrix repacked for the int8 path (layout in packed.c): rows in panels of 16,
/// columns in blocks of 64; per (panel, block) the weights and 16 uint8 block scales,
/// per row one float scale: W[r, k] = weight * scales[.] * row_scales[r] * out_scale.
typedef struct {
    const uint8_t *codes;       // mk_packed_code_bytes
    const uint8_t *scales;      // mk_packed_scale_count: [panel][block][16 rows]
    const float *row_scales;    // mk_packed_row_count: [panel][16 rows]
    uint8_t lut[16];            // bits 4: code -> int8 weight + 128
    float out_scale;            // results are multiplied by this
    int64_t rows;
    int64_t cols;
    int32_t bits;               // 4 (codes into lut) or 8 (uint8 = int8 + 128)
} mk_packed_matrix;

/// Whether a matrix with this many columns can be packed (a multiple of 64).
int mk_packed_fits(int64_t cols);
int64_t mk_packed_panels(int64_t rows);
int64_t mk_packed_code_bytes(int64_t rows, int64_t cols, int32_t bits);
/// uint8 block scales: one per row and block of 64 columns, panels padded to 16 rows.
int64_t mk_packed_scale_count(int64_t rows, int64_t cols);
/// Float row scales: rows padded to whole panels.
int64_t mk_packed_row_count(int64_t rows);
/// Scratch bytes one thread needs for mk_pack_q4 and mk_packed_gemm.
int64_t mk_packed_scratch_bytes(int64_t cols);

/// Pack panels [panel_begin, panel_end) of a 4-bit matrix (blocksize a multiple of 64):
/// codes keep their values (use mk_q8_lut for the table); each row's absmax values
/// become uint8 fractions of the row's largest (row_scales = largest / 255).
void mk_pack_q4(const mk_q4_matrix *w, int64_t panel_begin, int64_t panel_end,
                uint8_t *codes, uint8_t *scales, float *row_scales, void *scratch);

/// Pack panels of a dense matrix as int8 (bits 8): per row and block of 64 a uint8
/// scale times the row's float scale, the weights rounded against that stored scale;
/// rows_f32 holds 16 * cols floats.
void mk_pack_dense_q8(const mk_dense_matrix *w, int64_t panel_begin, int64_t panel_end,
                      uint8_t *codes, uint8_t *scales, float *row_scales, float *rows_f32);

/// A dense matrix at 4 bits: packed as int8 (mk_pack_dense_q8), then each weight keeps
/// its high nibble, with the table mk_dense_q4_lut (16c + 8: the middle of the 16
/// int8 values a code stands for; at most 8 of 127 units off). A first pass for the
/// lm_head that only has to find the likely tokens. panel_q8 holds cols * 16 bytes.
void mk_pack_dense_q4(const mk_dense_matrix *w, int64_t panel_begin, int64_t panel_end, uint8_t *codes,
                      uint8_t *scales, float *row_scales, float *rows_f32, uint8_t *panel_q8);
void mk_dense_q4_lut(uint8_t lut[16]);

/// Y[t * ldy + r] = W[r, :] . X[t, :] for every row t of X and the rows of panels
/// [panel_begin, panel_end). With VNNI, up to 8 rows of X (decode, a batch) run straight
/// from the packed codes; more (prefill) decode each panel once into `scratch` and reuse
/// it for 12 rows at a time. The AVX2 kernel always decodes the panel into `scratch`
/// (mk_packed_scratch_bytes), so pass it there for any row count.
void mk_packed_gemm(const mk_packed_matrix *w, const mk_q8_rows *x, float *y, int64_t ldy,
                    int64_t panel_begin, int64_t panel_end, void *scratch);
/// Whether mk_packed_gemm on this path uses `scratch` for `rows` activation rows
/// (otherwise it may be NULL).
int mk_packed_gemm_needs_scratch(int64_t rows);

/// out[(r - row_begin) * cols + c] = W[r, c]: decode rows to float32 (for GEMM).
void mk_dense_rows_to_f32(const mk_dense_matrix *w, int64_t row_begin, int64_t row_end, float *out);
void mk_q4_rows_to_f32(const mk_q4_matrix *w, int64_t row_begin, int64_t row_end, float *out);

/// Double quantization: absmax[i] = nested_map[codes[i]] * nested_absmax[i / nested_blocksize] + offset.
void mk_q4_expand_nested_absmax(const uint8_t *codes, int64_t count, const float *nested_map,
                                const float *nested_absmax, int64_t nested_blocksize,
                                float offset, float *absmax);

// ---------------------------------------------------------- sequence kernels

/// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight (weight may be NULL).
/// Rows are `n` wide; x and out have leading dimensions ldx and ldo (in floats).
void mk_rms_norm(const float *x, int64_t ldx, const float *weight, float eps,
                 int64_t rows, int64_t n, float *out, int64_t ldo);

/// Causal depthwise conv1d over T tokens followed by SiLU.
/// state [K, D]: the last K inputs of each channel, oldest first (tap-major, so 16
/// channels of one tap are one vector); updated in place.
/// weight [K, D] (tap-major too), bias [D]; x [T, D] with leading dimension ldx; out [T, D] (contiguous).
/// Only channels [d_begin, d_end) are computed (for splitting across threads).
void mk_conv1d_silu(float *state, const float *weight, const float *bias,
                    const float *x, int64_t ldx, int64_t T, int64_t D, int64_t K, float *out,
                    int64_t d_begin, int64_t d_end);

/// dt[t, d] = softplus(dt[t, d] + bias[d]) in place, dt [T, D] contiguous.
void mk_softplus_bias(float *dt, const float *bias, int64_t T, int64_t D);

/// The selective scan of Mamba-1 over T tokens, fused with the skip and the gate:
///   h[d, n] = 2^(dt[t, d] * A2[d, n]) * h[d, n] + dt[t, d] * x[t, d] * B[t, n]
///   y[t, d] = (sum_n h[d, n] * C[t, n] + Dskip[d] * x[t, d]) * silu(z[t, d])
/// h and A2 are in the scan's layout (mk_scan_layout); h is updated in place. dt, x, y
/// are [T, D] contiguous; B and C are rows of width N with leading dimension ldbc; z has
/// leading dimension ldz. Only channels [d_begin, d_end) are computed (and stored). A2
/// is Mamba's A (-exp(A_log), never positive) times log2(e): as a power of 2, the decay
/// exp(dt * A) needs no range reduction of its own.
void mk_selective_scan(float *h, const float *A2, const float *Dskip,
                       const float *dt, const float *x,
                       const float *B, const float *C, int64_t ldbc,
                       const float *z, int64_t ldz,
                       int64_t T, int64_t D, int64_t N, float *y,
                       int64_t d_begin, int64_t d_end);

/// Whether the scan keeps h and A2 in tiles of 16 channels ([D / 16][N][16]: N = 16 and D
/// a multiple of 16, as Falcon-Mamba's 7B) rather than [D][N]: one vector is then one
/// state of 16 channels.
int mk_scan_tiled(int64_t D, int64_t N);
/// Convert [D][N] rows (transformers' layout of A_log and the SSM state) to the scan's
/// layout (`to_scan` 1) or back (0); `from` and `to` must not overlap.
void mk_scan_layout(const float *from, float *to, int64_t D, int64_t N, int to_scan);

/// Where a prefetch puts a line. Non-temporal (prefetchnta): into L1, kept out of the
/// outer caches' way; on Zen 4 it holds an L1 miss buffer for the whole trip from
/// memory. L2 (prefetcht1): into L2 only, whose miss queue is deeper, so the products'
/// own loads find their lines there; on session 7's host (Zen 4) it made the 4-token
/// decode product 13-30% faster from memory than non-temporal at the same distance
/// (Benchmarks/kernels/packed_stream.c) and 4-token decode of the 7B ~21% faster.
enum { MK_PREFETCH_NONTEMPORAL = 0, MK_PREFETCH_L2 = 1 };

/// Read [data, data + bytes) once as fast as the CPU can (a bandwidth probe), asking for
/// each line `prefetch_distance` bytes ahead at `level` as the decode products do (0:
/// loads alone); returns a value that depends on every byte so the reads cannot be
/// optimized away.
uint64_t mk_read_bytes(const void *data, int64_t bytes, int64_t prefetch_distance, int level);

/// How far ahead decode asks for codes when it prefetches (packed.c; mk_prefetch_distance
/// says the distance in force). On the host sessions 3-5 measured, the hardware
/// prefetcher alone left some of the two-core bandwidth unused in its fast state: steps of
/// each distance alternating in one process gave 6 KiB 17.3 tok/s, 8 KiB 17.1, 4 and
/// 12 KiB 16.7, 16 KiB 16.4, none 8% slower. Session 6's host (same machine kind) differs:
/// none is 8-12% faster at batch 1 in its fast state, 15-20% slower at batch 4; session
/// 7 found 6 KiB also the best distance into L2 (3, 12 and 24 KiB slower at batch 2-8).
/// So the models race none against 6 KiB at both levels on live steps (FalconMamba's
/// PrefetchTuner) unless a plan is fixed (MAMBAD_PREFETCH, `prefetch =` in mambad.conf,
/// `mambad bench --prefetch`).
#define MK_PREFETCH_BYTES 6144

/// How many bytes ahead the decode products prefetch their weights; 0: no software
/// prefetch, the hardware prefetchers alone. Default 6144, or MAMBAD_PREFETCH (BYTES or
/// l2:BYTES for L2, nta:BYTES for non-temporal). Which is best depends on the host and
/// the batch (docs/performance.md).
int64_t mk_prefetch_distance(void);
/// The level those prefetches fill: MK_PREFETCH_L2 (the default) or MK_PREFETCH_NONTEMPORAL.
int mk_prefetch_level(void);
/// Set both (the distance clamped as mk_prefetch_clamp does; an unknown level counts as
/// L2); takes effect on the next product. A tuner's setting: it leaves the plan as
/// fixed or not as it was.
void mk_set_prefetch(int64_t bytes, int level);
/// A distance as the products take it: clamped to [0, 65536], rounded down to whole
/// 64-byte lines.
int64_t mk_prefetch_clamp(int64_t bytes);
/// Read a plan as MAMBAD_PREFETCH, `prefetch =` and `--prefetch` write it: `BYTES`,
/// `l2:BYTES` or `nta:BYTES`, BYTES decimal digits with an optional K (KiB), at most
/// 64 KiB. 1 and the clamped distance and the level, or 0 (nothing written) for
/// anything else.
int mk_prefetch_parse(const char *text, int64_t *bytes, int *level);
/// Whether the plan is fixed for the process (MAMBAD_PREFETCH, or mk_fix_prefetch), so
/// that tuners leave it alone: 1, else 0.
int mk_prefetch_fixed(void);
/// Fix the plan at `bytes` and `level` (as mk_set_prefetch), or, with bytes < 0, let
/// tuners set it.
void mk_fix_prefetch(int64_t bytes, int level);

// ------------------------------------------------------------- thread pool

/// A persistent pool of compute threads (created once; no thread creation per call).
typedef struct mk_pool mk_pool;
typedef void (*mk_task_fn)(void *context, int64_t task);

/// A pool running on `threads` threads in all, the caller of mk_pool_run included.
mk_pool *mk_pool_create(int threads);
int mk_pool_threads(const mk_pool *pool);
/// Run fn(context, t) for t in [0, tasks) across the pool; returns when all are done.
/// One job at a time per pool: calls must not overlap.
void mk_pool_run(mk_pool *pool, mk_task_fn fn, void *context, int64_t tasks);
/// fn(context, i) on thread i, for each thread of the pool (the caller is thread 0):
/// work whose placement matters, such as decode, where each thread streams the same
/// share of every matrix on every step.
void mk_pool_run_each(mk_pool *pool, mk_task_fn fn, void *context);
void mk_pool_destroy(mk_pool *pool);
/// The calling thread's nice value (Linux: threads have their own); 0 on success.
int mk_thread_set_nice(int nice);

/// A run of work items [begin, end) that one thread owns and the others may finish: the
/// owner takes from the front, a quarter of what is left at a time, so its reads stay
/// one long run; a thread done with its own takes from the back, an eighth at a time
/// (at least one item each), so only the tail of a slower thread's run moves. Both ends
/// live in one word, changed by compare-and-swap; begin and end below 2^32.
typedef struct { uint64_t ends; } mk_share;
void mk_share_init(mk_share *share, int64_t begin, int64_t end);
/// Take items from the front (`helper` 0: the owner) or the back (1); returns how many
/// (0 once the share is empty), the first of them in *first.
int64_t mk_share_take(mk_share *share, int helper, int64_t *first);
/// The same in pieces of a multiple of `multiple` items (but the last, if the share's
/// length is not one): a share whose ends are multiples stays cut at multiples.
int64_t mk_share_take_multiple(mk_share *share, int helper, int64_t multiple, int64_t *first);

#ifdef __cplusplus
}
#endif

#endif
