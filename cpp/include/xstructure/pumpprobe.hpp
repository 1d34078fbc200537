// Pump-probe reduction: one pass over a block of shots (xstructure.experiment.PumpProbe.reduce).
//
// For each shot s of a block of n consecutive shots (one radial profile x_s of Q values per row):
//
//   1. sums:     tot = Σ_q x_sq and, for window normalisation, win = Σ_{i0 <= q < i1} x_sq, both in float64;
//   2. its code: the code known before reading (timetool, weights) if any, else NAN when tot is not finite, else
//                NORM when the window sum is not finite and positive; the inverse normaliser inv = 1 / win
//                (window), the given 1 / weight (weights) or 1 (none);
//   3. outliers: for a shot still valid and in a group g with statistics, the number of q points with
//                |x_sq · inv − center[g, q]| > thr[g, q], computed in the input type T as numpy does it
//                (inv rounded to T); more than `limit` of them: code OUTLIER;
//   4. its use:  a valid shot in a group (g >= 0) adds w · inv · x_s to every row r of its column of the
//                aggregation matrix (the entries (r, w) of column s), in float64.
//
// The rows a block touches are a few hundred of the plan's rows; they are numbered in increasing order
// (urows) and the block's sums are written to a dense (len(urows), Q) array, which the caller adds into its
// rows.  Only rows that a used shot touched are returned.
//
// The per-shot decisions below (XS_HD) are the whole of the arithmetic besides the sums; they are plain
// functions so that a device kernel can share them.  No Python and no torch here.
//
// CPU only, for now: a run's profiles are host data (numpy, h5py, zarr, read in chunks), and PumpProbe takes no
// device arrays; the compiled pass is about half of a reduction of 10⁶ shots, the rest (outlier statistics,
// plan, bootstrap) being numpy on the host, so a device pass behind a host-to-device copy of the same bytes
// would save a fraction of that half.  A CUDA kernel would be one block per shot calling these functions and
// adding into the rows with double atomics.
#pragma once

#include <cstdint>
#include <vector>

#include "xstructure/hd.hpp"

namespace xstructure {

// Rejection codes (xstructure.experiment.run: REASONS, in order, from 1).
enum PumpProbeCode : uint8_t { PP_OK = 0, PP_TIMETOOL = 1, PP_NAN = 2, PP_NORM = 3, PP_OUTLIER = 4, PP_NOREF = 5 };

// Normalisation of each shot.
enum class PumpProbeNorm : int32_t { NONE = 0, WINDOW = 1, WEIGHTS = 2 };

struct PumpProbeProblem {
    int64_t n = 0;                  // shots in the block
    int64_t Q = 0;                  // q points per shot
    int64_t stride = 0;             // elements from one row of X to the next (>= Q)
    PumpProbeNorm norm = PumpProbeNorm::NONE;
    int64_t i0 = 0, i1 = 0;         // the normalisation window [i0, i1) (WINDOW)
    const double* inv_in = nullptr;   // (n,) 1 / weight of each shot (WEIGHTS; 0 where the weight is bad)
    const uint8_t* code_in = nullptr; // (n,) codes known before reading the profiles (0: none)
    const int64_t* group = nullptr;   // (n,) group of each shot: -1 none, 0 laser-off, 1 + delay bin
    int64_t G = 0;                    // groups (rows of center and thr)
    const uint8_t* has = nullptr;     // (G,) the group has outlier statistics; null: no outlier test
    const void* center = nullptr;     // (G, Q) of T: per-group median
    const void* thr = nullptr;        // (G, Q) of T: per-group threshold (k σ̂)
    int64_t limit = 0;                // a shot with more than `limit` points beyond thr is an outlier
    const int64_t* col_ptr = nullptr; // (n + 1,) the block's columns of the aggregation matrix (CSC pointers)
    const int32_t* col_row = nullptr; // entries' rows (global, 0 <= row < n_rows), indexed by col_ptr
    const double* col_val = nullptr;  // entries' weights
    int64_t n_rows = 0;               // rows of the aggregation matrix
    int num_threads = 0;              // 0: OpenMP's default
};

namespace pumpprobe_term {

// Code and inverse normaliser of one shot from its sums (steps 2 of the header).  code_in: the code known
// before; weight_inv: 1 / weight (WEIGHTS).  Returns the code; *inv gets the inverse normaliser (0 when the
// sums reject the shot).
XS_HD uint8_t shot_code(uint8_t code_in, double tot, double win, PumpProbeNorm norm, double weight_inv,
                        double* inv) {
    uint8_t c = isfinite(tot) ? PP_OK : PP_NAN;
    double v = 1.0;
    if (norm == PumpProbeNorm::WINDOW) {
        const bool ok = isfinite(win) && win > 0.0;
        if (c == PP_OK && !ok) c = PP_NORM;
        v = ok ? 1.0 / win : 0.0;
    } else if (norm == PumpProbeNorm::WEIGHTS) {
        v = weight_inv;
    }
    *inv = c == PP_OK ? v : 0.0;
    return code_in != PP_OK ? code_in : c;
}

// Whether a shot of code `code` in group g takes the outlier test.
XS_HD bool tested(uint8_t code, int64_t g, const uint8_t* has) { return has && code == PP_OK && g >= 0 && has[g]; }

// Whether one q point lies beyond the threshold: |x · inv − center| > thr, in T (no fused multiply-add).
template <typename T>
XS_HD bool beyond(T x, T inv, T center, T thr) {
    const T z = x * inv - center;
    return (z < T(0) ? -z : z) > thr;
}

// Whether a shot is used: valid and in a group.
XS_HD bool used(uint8_t code, int64_t g) { return code == PP_OK && g >= 0; }

}  // namespace pumpprobe_term

// The distinct rows of the block's column entries, increasing (all entries, used or not: an upper bound).
std::vector<int64_t> pumpprobe_rows(const PumpProbeProblem& p);

// One pass over X (n rows of `stride` T, the first Q used) for T = float or double: writes code (n,) and inv (n,)
// (1 / normaliser of a used shot, 0 otherwise), sums the used shots into `sums` ((n_urows, Q) row-major, need
// not be initialised, for the rows of pumpprobe_rows) and returns the number k of rows a used shot touched: rows and
// sums are compacted in place so that their first k entries are those rows, still increasing.
template <typename T>
int64_t pumpprobe_block_cpu(const PumpProbeProblem& p, const T* X, int64_t* rows, int64_t n_urows,
                            double* sums, uint8_t* code, double* inv);

}  // namespace xstructure
