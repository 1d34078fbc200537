// CUDA device queries (see xstructure/runtime.hpp); builds without CUDA get cuda_stub.cpp instead.
#include <cuda_runtime.h>

#include "xstructure/runtime.hpp"

namespace xstructure {

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error: no driver or no device is not a failure here
        return 0;
    }
    return n;
}

}  // namespace xstructure
