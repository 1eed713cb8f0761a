#pragma once
// Name rules of the API's validation that the kubelet checks itself where a name becomes a folder or a key.
#include <string>

namespace kubelet::api {

/** The name part of a qualified name (and a CSI driver name): 63 characters at most, alphanumerics with '-', '_'
 * and '.' between, starting and ending with an alphanumeric. */
bool IsQualifiedNamePart(const std::string& s);
/** A DNS-1123 subdomain: lowercase labels of alphanumerics and '-', joined by '.', 253 characters at most. */
bool IsDNS1123Subdomain(const std::string& s);

}  // namespace kubelet::api
