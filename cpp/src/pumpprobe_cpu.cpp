// CPU pump-probe pass over a block of shots (see xstructure/pumpprobe.hpp).
//
// Each shot is read once: its row stays in the L1 cache while it is summed, tested and added into the rows of
// its column (a few hundred float64 rows of Q for a block of a few thousand shots, a few hundred KiB, that stay
// in L2).  With several threads, each takes a contiguous range of shots and adds into its own copy of the rows
// (the first thread into the output), and the copies' rows are added into the output at the end, split by rows,
// so no two threads write the same row.  Every copy's row, the output's too, is zeroed when first touched: the
// caller's buffer need not be initialised, and the rows no used shot touched are dropped.  The shot pass is
// compiled twice (baseline and AVX2, pumpprobe_cpu_kernels.inc) and chosen at run time.
//
// (Sorting a block's entries by row and building each output row in registers or in L1 from the shots' rows,
// written once, was measured slower: the shots' rows then come back from L3, not L1.)
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "xstructure/pumpprobe.hpp"
#include "xstructure/runtime.hpp"

namespace xstructure {

#define XS_DECLARE_ISA(ns)                                                                                        \
    namespace ns {                                                                                                \
    void shots_f32(const PumpProbeProblem&, const float*, const int32_t*, int64_t, int64_t, double*, uint8_t*,    \
                   uint8_t*, double*);                                                                            \
    void shots_f64(const PumpProbeProblem&, const double*, const int32_t*, int64_t, int64_t, double*, uint8_t*,   \
                   uint8_t*, double*);                                                                            \
    }
XS_DECLARE_ISA(isa_base)
#ifdef XSTRUCTURE_HAS_AVX2
XS_DECLARE_ISA(isa_avx2)
#endif
#undef XS_DECLARE_ISA

namespace {

#ifdef XSTRUCTURE_HAS_AVX2
#define XS_PP_CALL(fn, ...) (cpu_has_avx2_fma() ? isa_avx2::fn(__VA_ARGS__) : isa_base::fn(__VA_ARGS__))
#else
#define XS_PP_CALL(fn, ...) isa_base::fn(__VA_ARGS__)
#endif

void shot_range(const PumpProbeProblem& p, const float* X, const int32_t* local, int64_t s0, int64_t s1,
                double* sums, uint8_t* touched, uint8_t* code, double* inv) {
    XS_PP_CALL(shots_f32, p, X, local, s0, s1, sums, touched, code, inv);
}
void shot_range(const PumpProbeProblem& p, const double* X, const int32_t* local, int64_t s0, int64_t s1,
                double* sums, uint8_t* touched, uint8_t* code, double* inv) {
    XS_PP_CALL(shots_f64, p, X, local, s0, s1, sums, touched, code, inv);
}
#undef XS_PP_CALL

// A map row -> local index, -1 everywhere between calls (each user resets the entries it set).
std::vector<int32_t>& row_map(int64_t n_rows) {
    thread_local std::vector<int32_t> m;
    if (static_cast<int64_t>(m.size()) < n_rows) m.resize(static_cast<size_t>(n_rows), -1);
    return m;
}

// Shots per thread below which more threads do not pay for their copies of the rows.
constexpr int64_t kShotsPerThread = 512;

}  // namespace

std::vector<int64_t> pumpprobe_rows(const PumpProbeProblem& p) {
    std::vector<int32_t>& m = row_map(p.n_rows);
    std::vector<int64_t> rows;
    const int64_t e0 = p.col_ptr[0], e1 = p.col_ptr[p.n];
    bool bad = false;
    for (int64_t e = e0; e < e1; ++e) {
        const int32_t r = p.col_row[e];
        if (r < 0 || r >= p.n_rows) {
            bad = true;
            break;
        }
        if (m[r] < 0) {
            m[r] = 0;
            rows.push_back(r);
        }
    }
    for (int64_t r : rows) m[r] = -1;
    if (bad) throw std::out_of_range("pumpprobe: a column entry's row is outside [0, n_rows)");
    std::sort(rows.begin(), rows.end());
    return rows;
}

template <typename T>
int64_t pumpprobe_block_cpu(const PumpProbeProblem& p, const T* X, int64_t* rows, int64_t n_urows, double* sums,
                            uint8_t* code, double* inv) {
    const int64_t n = p.n, Q = p.Q, nu = n_urows;
    std::vector<int32_t>& m = row_map(p.n_rows);
    for (int64_t i = 0; i < nu; ++i) m[rows[i]] = static_cast<int32_t>(i);
#ifdef _OPENMP
    int nt = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
#else
    int nt = 1;
#endif
    nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, n / kShotsPerThread)));
    std::vector<uint8_t> touched(static_cast<size_t>(nt * std::max<int64_t>(nu, 1)), 0);
    if (nt == 1) {
        shot_range(p, X, m.data(), 0, n, sums, touched.data(), code, inv);
    } else {
        // The copies of threads 1.. (uninitialised: rows are zeroed when first touched).
        std::unique_ptr<double[]> copies(new double[static_cast<size_t>((nt - 1) * nu * Q)]);
#pragma omp parallel num_threads(nt)
        {
#ifdef _OPENMP
            const int t = omp_get_thread_num();
#else
            const int t = 0;
#endif
            const int64_t s0 = n * t / nt, s1 = n * (t + 1) / nt;
            double* own = t == 0 ? sums : copies.get() + (t - 1) * nu * Q;
            shot_range(p, X, m.data(), s0, s1, own, touched.data() + t * nu, code, inv);
#pragma omp barrier
#pragma omp for schedule(static)
            for (int64_t r = 0; r < nu; ++r) {
                double* dst = sums + r * Q;
                bool have = touched[r];
                for (int u = 1; u < nt; ++u) {
                    if (!touched[u * nu + r]) continue;
                    const double* src = copies.get() + ((u - 1) * nu + r) * Q;
                    if (have) {
                        for (int64_t k = 0; k < Q; ++k) dst[k] += src[k];
                    } else {
                        std::memcpy(dst, src, sizeof(double) * Q);
                    }
                    have = true;
                }
                touched[r] = have;
            }
        }
    }
    for (int64_t i = 0; i < nu; ++i) m[rows[i]] = -1;
    // Keep the rows a used shot touched.
    int64_t k = 0;
    for (int64_t i = 0; i < nu; ++i) {
        if (!touched[i]) continue;
        if (k != i) {
            rows[k] = rows[i];
            std::memmove(sums + k * Q, sums + i * Q, sizeof(double) * Q);
        }
        ++k;
    }
    return k;
}

template int64_t pumpprobe_block_cpu<float>(const PumpProbeProblem&, const float*, int64_t*, int64_t, double*,
                                            uint8_t*, double*);
template int64_t pumpprobe_block_cpu<double>(const PumpProbeProblem&, const double*, int64_t*, int64_t, double*,
                                             uint8_t*, double*);

}  // namespace xstructure
