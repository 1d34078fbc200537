// Shared by the bind_*.cpp files: raw-address helpers and the one device/dtype dispatch.
//
// Buffers cross from Python as integer addresses (see xstructure/_backend.py).  Each binding turns them into
// typed pointers with cptr / mptr and picks the kernel with dispatch():
//
//     dispatch(device, dtype, "debye", [&](auto dev, auto t) {
//         using T = decltype(t);
//         if constexpr (is_cpu<decltype(dev)>) debye_forward_cpu<T>(...);
//         else debye_forward_cuda<T>(...);
//     });
//
// An unknown device or dtype throws std::invalid_argument (ValueError in Python) naming the kernel and the
// accepted values.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace xstructure {
namespace bind {

template <typename T>
const T* cptr(std::uintptr_t a) { return reinterpret_cast<const T*>(a); }
template <typename T>
T* mptr(std::uintptr_t a) { return reinterpret_cast<T*>(a); }
inline void* stream_ptr(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

enum class Device { cpu, cuda };
template <Device D>
using DeviceTag = std::integral_constant<Device, D>;
template <typename Tag>
inline constexpr bool is_cpu = Tag::value == Device::cpu;

template <Device... Ds>
struct Devices {};
using CpuAndCuda = Devices<Device::cpu, Device::cuda>;
using CpuOnly = Devices<Device::cpu>;

template <typename... Ts>
struct Dtypes {};
using Floating = Dtypes<float, double>;

constexpr const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// The dtype names of the Python side (numpy / torch spelling).
template <typename T> constexpr const char* dtype_name();
template <> constexpr const char* dtype_name<float>() { return "float32"; }
template <> constexpr const char* dtype_name<double>() { return "float64"; }
template <> constexpr const char* dtype_name<uint16_t>() { return "uint16"; }
template <> constexpr const char* dtype_name<int32_t>() { return "int32"; }
template <> constexpr const char* dtype_name<uint32_t>() { return "uint32"; }

namespace detail {

// "a", "a or b", "a, b or c"
inline std::string one_of(const char* const* names, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        if (i > 0) s += (i + 1 == n) ? " or " : ", ";
        s += names[i];
    }
    return s;
}

template <Device... Ds, typename F>
void on_device(Devices<Ds...>, const std::string& device, const char* kernel, F&& f) {
    const bool found = ((device == device_name(Ds) ? (f(DeviceTag<Ds>{}), true) : false) || ...);
    if (!found) {
        const char* names[] = {device_name(Ds)...};
        throw std::invalid_argument(std::string(kernel) + ": device must be " + one_of(names, sizeof...(Ds)) +
                                    ", not '" + device + "'");
    }
}

template <typename... Ts, typename F>
void on_dtype(Dtypes<Ts...>, const std::string& dtype, const char* kernel, F&& f) {
    const bool found = ((dtype == dtype_name<Ts>() ? (f(Ts{}), true) : false) || ...);
    if (!found) {
        const char* names[] = {dtype_name<Ts>()...};
        throw std::invalid_argument(std::string(kernel) + ": dtype must be " + one_of(names, sizeof...(Ts)) +
                                    ", not '" + dtype + "'");
    }
}

}  // namespace detail

// f(DeviceTag) for the device named `device`, one of DeviceList.
template <typename DeviceList = CpuAndCuda, typename F>
void dispatch_device(const std::string& device, const char* kernel, F&& f) {
    detail::on_device(DeviceList{}, device, kernel, f);
}

// f(DeviceTag, T{}) for the device and element type named by `device` and `dtype`.  The device is checked first.
template <typename DtypeList = Floating, typename DeviceList = CpuAndCuda, typename F>
void dispatch(const std::string& device, const std::string& dtype, const char* kernel, F&& f) {
    detail::on_device(DeviceList{}, device, kernel, [&](auto dev) {
        detail::on_dtype(DtypeList{}, dtype, kernel, [&](auto t) { f(dev, t); });
    });
}

}  // namespace bind
}  // namespace xstructure
