#include "kubelet/util/node_info.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <fstream>
#include <sstream>

namespace kubelet {

int64_t MachineMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemTotal:") return kb * 1024;
  }
  return 0;
}

std::string DetectNodeIP() {
  std::string default_if;
  std::ifstream route("/proc/net/route");
  std::string line;
  std::getline(route, line);
  while (std::getline(route, line)) {
    std::istringstream ss(line);
    std::string iface, dest;
    ss >> iface >> dest;
    if (dest == "00000000") {
      default_if = iface;
      break;
    }
  }
  ifaddrs* addrs = nullptr;
  if (getifaddrs(&addrs) != 0) return "127.0.0.1";
  std::string first, chosen;
  for (ifaddrs* a = addrs; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || (a->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof(buf));
    if (first.empty()) first = buf;
    if (!default_if.empty() && default_if == a->ifa_name) {
      chosen = buf;
      break;
    }
  }
  freeifaddrs(addrs);
  if (!chosen.empty()) return chosen;
  return first.empty() ? "127.0.0.1" : first;
}

}  // namespace kubelet

namespace kubelet {

int64_t MachinePidMax() {
  std::ifstream in("/proc/sys/kernel/pid_max");
  int64_t v = 0;
  if (!(in >> v)) return 0;
  return v;
}

}  // namespace kubelet
