// Radial (azimuthal) integration of detector frames through a precomputed pixel -> bin map.
//
// The Python layer builds the map once per geometry: a compact bin index per pixel (uint16 when the bins fit,
// else int32), with statically masked and out-of-range pixels sent to a dump bin `nbins`, and the per-pixel
// normalisation w = solid angle x polarisation x flat.  The static sums of w, w^2 and the pixel count per bin
// are computed there too, so a frame costs one read of the frame and of the index:
//
//     signal[f, b] = sum_{k in b, valid} x_fk
//     var[f, b]    = sum_{k in b, valid} max(1, x_fk)                  (mode POISSON, pyFAI's Poisson model)
//                  = sum_{k in b, valid} (x_fk - mean[f, b] w_k)^2     (mode AZIMUTHAL_PASS2)
//
// Pixels found invalid while reading (NaN, +-inf, below `lo`, above `hi`, equal to the dummy value) are
// left out and their w, w^2 and count are accumulated in removed_* so the caller can subtract them from the
// static sums: dynamic masking costs nothing for the pixels that are valid.
//
// Output rows have nbins + 1 entries (the last one is the dump bin).  No Python and no torch here.
#pragma once

#include <cmath>
#include <cstdint>

#include "xstructure/hd.hpp"

namespace xstructure {

enum class RadialMode : int32_t { SIGNAL = 0, POISSON = 1, AZIMUTHAL_PASS2 = 2 };

struct RadialProblem {
    int64_t F = 0;               // frames
    int64_t npix = 0;            // pixels per frame
    int32_t nbins = 0;           // bins (the map's dump bin is nbins)
    const void* index = nullptr; // (npix,) uint16 or int32 bin of each pixel
    bool index16 = false;
    const double* weight = nullptr;  // (npix,) normalisation w of each pixel (null: all 1)
    bool check = true;           // test each value for validity (off for integer frames with no limits)
    double lo = 0.0;             // a value is valid when lo <= x <= hi (NaN never is)
    double hi = 0.0;
    bool has_dummy = false;      // also invalid when |x - dummy| <= delta_dummy
    double dummy = 0.0;
    double delta_dummy = 0.0;
    RadialMode mode = RadialMode::SIGNAL;
    const double* mean = nullptr;  // (F, nbins + 1) bin means, for AZIMUTHAL_PASS2
    int num_threads = 0;
};

// The per-value validity test shared by the CPU and CUDA kernels.
struct RadialValidity {
    bool check;
    double lo, hi;
    bool has_dummy;
    double dummy, delta;
    XS_HD_MEMBER bool operator()(double x) const {
        if (!check) return true;
        if (!(x >= lo && x <= hi)) return false;
        return !(has_dummy && fabs(x - dummy) <= delta);
    }
};

// The per-pixel arithmetic shared by the CPU and CUDA kernels.
namespace radial_term {

// Bin of pixel k (the dump bin nbins for masked pixels).
template <typename I>
XS_HD int64_t bin(const I* index, int64_t k) { return static_cast<int64_t>(index[k]); }

// Normalisation w of pixel k (1 without a weight map).
XS_HD double weight(const double* w, int64_t k) { return w ? w[k] : 1.0; }

// Pass-2 (azimuthal) variance term of a valid value x in a bin of mean `mean`: (x - mean w)^2.
XS_HD double deviation2(double x, double mean, double w) {
    const double d = x - mean * w;
    return d * d;
}

// Poisson variance of a valid value, max(1, x) (the GPU adds it per pixel), and its excess over x, max(0, 1 - x):
// the CPU sums x once for signal and variance and adds the (rare) excess separately.
XS_HD double poisson_variance(double x) { return x > 1.0 ? x : 1.0; }
XS_HD double poisson_excess(double x) { return x < 1.0 ? 1.0 - x : 0.0; }

}  // namespace radial_term

// Outputs, each (F, nbins + 1) float64, overwritten: signal, var (may be null in SIGNAL mode; in
// AZIMUTHAL_PASS2 only var is written), removed_w, removed_w2, removed_count (written by SIGNAL and
// POISSON; may be null in AZIMUTHAL_PASS2).
struct RadialOutputs {
    double* signal = nullptr;
    double* var = nullptr;
    double* removed_w = nullptr;
    double* removed_w2 = nullptr;
    double* removed_count = nullptr;
};

// T = uint16_t | int32_t | uint32_t | float | double.
template <typename T>
void radial_histogram_cpu(const RadialProblem& p, const T* frames, const RadialOutputs& out);

// CUDA: all pointers device pointers; `stream` is a cudaStream_t.  Throws when built without CUDA.
template <typename T>
void radial_histogram_cuda(const RadialProblem& p, const T* frames, const RadialOutputs& out, void* stream);

}  // namespace xstructure
