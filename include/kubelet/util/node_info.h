#pragma once
// Facts about this machine the kubelet reports or sizes things by.
#include <cstdint>
#include <string>

namespace kubelet {

/** MemTotal from /proc/meminfo, in bytes (0 if unreadable). */
int64_t MachineMemoryBytes();
/** /proc/sys/kernel/pid_max (0 if unreadable): the node's pid capacity. */
int64_t MachinePidMax();
/** The IPv4 address of the default route's interface, else the first non-loopback one, else 127.0.0.1. */
std::string DetectNodeIP();

inline constexpr char kKubeletVersion[] = "v1.31.0";
inline constexpr char kKubeletCppVersion[] = "0.1.0";

}  // namespace kubelet
