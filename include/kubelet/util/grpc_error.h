#pragma once
// gRPC errors as a Go client prints them ("rpc error: code = Unavailable desc = ..."): upstream's events, status
// messages and logs quote them that way.
#include <string>

#include <grpcpp/support/status.h>

namespace kubelet {

inline const char* GrpcCodeName(grpc::StatusCode c) {
  static const char* names[] = {"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
                                "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
                                "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"};
  int code = static_cast<int>(c);
  return code >= 0 && code <= 16 ? names[code] : "Unknown";
}

inline std::string GoGrpcError(const grpc::Status& s) {
  return std::string("rpc error: code = ") + GrpcCodeName(s.error_code()) + " desc = " + s.error_message();
}

}  // namespace kubelet
