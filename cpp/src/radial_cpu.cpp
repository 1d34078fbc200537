// CPU radial histogram (see xstructure/radial.hpp).
//
// Neighbouring pixels usually fall in the same or a nearby bin, so a single histogram would make each
// add wait for the previous store to the same address.  Four interleaved copies (pixel k goes to copy
// k mod 4) break that chain; they are summed at the end.  Frames are spread over threads when there are
// enough of them; a single frame is split into pixel ranges with a private histogram per thread.
#include "xstructure/radial.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>


#ifdef _OPENMP
#include <omp.h>
#endif

namespace xstructure {
namespace {

constexpr int kCopies = 8;

struct Scratch {
    std::vector<double> h;    // kCopies x nb1 sums (signal, or the pass-2 squares)
    std::vector<double> rem;  // 4 x nb1: removed w, w^2, count; Poisson correction sum (1 - x) over x < 1
};

// Accumulate pixels [k0, k1) of one frame into the scratch histograms.
//
// The Poisson variance sum Σ max(1, x) is Σ x plus Σ (1 − x) over the values below 1, so the common case
// (valid and ≥ 1) adds x alone; values below 1 are rare in dense data and take the per-pixel path.
template <typename T, typename I, RadialMode M>
void accumulate(const RadialProblem& p, const T* frame, const I* index, const double* mean_row, int64_t k0,
                int64_t k1, const RadialValidity& valid, Scratch& s) {
    const int64_t nb1 = p.nbins + 1;
    double* h[kCopies];
    for (int c = 0; c < kCopies; ++c) h[c] = s.h.data() + c * nb1;
    double* rw = s.rem.data();
    double* rw2 = rw + nb1;
    double* rc = rw2 + nb1;
    double* corr = rc + nb1;
    const double* w = p.weight;

    auto add = [&](double* hc, int64_t k, double x, int64_t b) {
        if (M == RadialMode::AZIMUTHAL_PASS2) hc[b] += radial_term::deviation2(x, mean_row[b], radial_term::weight(w, k));
        else hc[b] += x;
    };
    auto step = [&](double* hc, int64_t k) {
        const double x = static_cast<double>(frame[k]);
        const int64_t b = radial_term::bin(index, k);
        if (!valid(x)) {
            if (M != RadialMode::AZIMUTHAL_PASS2) {
                const double wk = radial_term::weight(w, k);
                rw[b] += wk;
                rw2[b] += wk * wk;
                rc[b] += 1.0;
            }
            return;
        }
        add(hc, k, x, b);
        if (M == RadialMode::POISSON && x < 1.0) corr[b] += radial_term::poisson_excess(x);
    };
    // Test a block of values at once (branch-free, vectorisable); take the per-pixel path only for a block
    // that holds an invalid value (or, for the Poisson sum, a value below 1).
    const bool test_lo = valid.check || M == RadialMode::POISSON;
    const double lo = M == RadialMode::POISSON ? std::max(valid.check ? valid.lo : 1.0, 1.0) : valid.lo;
    const double hi = valid.check ? valid.hi : std::numeric_limits<double>::infinity();
    int64_t k = k0;
    if (!test_lo) {
        for (; k + kCopies <= k1; k += kCopies)
            for (int c = 0; c < kCopies; ++c) add(h[c], k + c, static_cast<double>(frame[k + c]), index[k + c]);
    } else {
        for (; k + kCopies <= k1; k += kCopies) {
            bool ok = true;
            for (int c = 0; c < kCopies; ++c) {
                const double x = static_cast<double>(frame[k + c]);
                ok &= (x >= lo) & (x <= hi);
            }
            if (valid.check && valid.has_dummy) {
                for (int c = 0; c < kCopies; ++c)
                    ok &= !(std::fabs(static_cast<double>(frame[k + c]) - valid.dummy) <= valid.delta);
            }
            if (ok) {
                for (int c = 0; c < kCopies; ++c) add(h[c], k + c, static_cast<double>(frame[k + c]), index[k + c]);
            } else {
                for (int c = 0; c < kCopies; ++c) step(h[c], k + c);
            }
        }
    }
    for (; k < k1; ++k) step(h[0], k);
}

void reset(Scratch& s, int64_t nb1) {
    s.h.assign(static_cast<size_t>(kCopies * nb1), 0.0);
    s.rem.assign(static_cast<size_t>(4 * nb1), 0.0);
}

// Add (or, when `add` is false, store) the scratch sums into the output rows of frame f.
template <RadialMode M>
void flush(const Scratch& s, int64_t nb1, int64_t f, const RadialOutputs& out, bool add) {
    auto put = [add](double* dst, double v) { *dst = add ? *dst + v : v; };
    for (int64_t b = 0; b < nb1; ++b) {
        double a = 0.0;
        for (int c = 0; c < kCopies; ++c) a += s.h[c * nb1 + b];
        if (M == RadialMode::AZIMUTHAL_PASS2) {
            put(out.var + f * nb1 + b, a);
            continue;
        }
        put(out.signal + f * nb1 + b, a);
        if (M == RadialMode::POISSON) put(out.var + f * nb1 + b, a + s.rem[3 * nb1 + b]);
        if (out.removed_w) put(out.removed_w + f * nb1 + b, s.rem[b]);
        if (out.removed_w2) put(out.removed_w2 + f * nb1 + b, s.rem[nb1 + b]);
        if (out.removed_count) put(out.removed_count + f * nb1 + b, s.rem[2 * nb1 + b]);
    }
}

template <typename T, typename I, RadialMode M>
void run(const RadialProblem& p, const T* frames, const RadialOutputs& out) {
    const int64_t nb1 = p.nbins + 1;
    const I* index = static_cast<const I*>(p.index);
    const RadialValidity valid{p.check, p.lo, p.hi, p.has_dummy, p.dummy, p.delta_dummy};
#ifdef _OPENMP
    const int nt = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
#else
    const int nt = 1;
#endif
    auto mean_row = [&](int64_t f) { return p.mean ? p.mean + f * nb1 : nullptr; };
    if (p.F >= nt || p.npix < (int64_t{1} << 16)) {
        // Whole frames per thread.
#pragma omp parallel num_threads(nt)
        {
            Scratch s;
#pragma omp for schedule(dynamic, 1)
            for (int64_t f = 0; f < p.F; ++f) {
                reset(s, nb1);
                accumulate<T, I, M>(p, frames + f * p.npix, index, mean_row(f), 0, p.npix, valid, s);
                flush<M>(s, nb1, f, out, false);
            }
        }
        return;
    }
    // Few large frames: split each frame's pixels over the threads.
    for (int64_t f = 0; f < p.F; ++f) {
        for (double* o : {out.signal, out.var, out.removed_w, out.removed_w2, out.removed_count})
            if (o) std::memset(o + f * nb1, 0, sizeof(double) * nb1);
#pragma omp parallel num_threads(nt)
        {
#ifdef _OPENMP
            const int t = omp_get_thread_num(), n = omp_get_num_threads();
#else
            const int t = 0, n = 1;
#endif
            // Interleaved blocks of 16k pixels (a block per thread in turn) keep the threads on nearby rows.
            constexpr int64_t kBlock = 16384;
            static thread_local Scratch s;
            reset(s, nb1);
            for (int64_t k0 = int64_t(t) * kBlock; k0 < p.npix; k0 += int64_t(n) * kBlock)
                accumulate<T, I, M>(p, frames + f * p.npix, index, mean_row(f), k0, std::min(p.npix, k0 + kBlock),
                                    valid, s);
#pragma omp critical(xstructure_radial_flush)
            flush<M>(s, nb1, f, out, true);
        }
    }
}

template <typename T, typename I>
void dispatch_mode(const RadialProblem& p, const T* frames, const RadialOutputs& out) {
    switch (p.mode) {
        case RadialMode::SIGNAL: run<T, I, RadialMode::SIGNAL>(p, frames, out); break;
        case RadialMode::POISSON: run<T, I, RadialMode::POISSON>(p, frames, out); break;
        case RadialMode::AZIMUTHAL_PASS2: run<T, I, RadialMode::AZIMUTHAL_PASS2>(p, frames, out); break;
    }
}

}  // namespace

template <typename T>
void radial_histogram_cpu(const RadialProblem& p, const T* frames, const RadialOutputs& out) {
    if (p.index16) dispatch_mode<T, uint16_t>(p, frames, out);
    else dispatch_mode<T, int32_t>(p, frames, out);
}

template void radial_histogram_cpu<uint16_t>(const RadialProblem&, const uint16_t*, const RadialOutputs&);
template void radial_histogram_cpu<int32_t>(const RadialProblem&, const int32_t*, const RadialOutputs&);
template void radial_histogram_cpu<uint32_t>(const RadialProblem&, const uint32_t*, const RadialOutputs&);
template void radial_histogram_cpu<float>(const RadialProblem&, const float*, const RadialOutputs&);
template void radial_histogram_cpu<double>(const RadialProblem&, const double*, const RadialOutputs&);

}  // namespace xstructure
