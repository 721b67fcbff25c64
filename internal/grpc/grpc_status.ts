// Translation between GatewayError and gRPC status codes, done only at the
// RPC boundary.

import { Code, ConnectError } from "@connectrpc/connect";
import { GatewayError, type GatewayErrorCode } from "../../errors.ts";

const TO_CODE: Record<GatewayErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  incomplete: Code.Unavailable,
  closed: Code.Unavailable,
  internal: Code.Internal,
};

/** The gRPC error for anything a handler threw. */
export function toConnectError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  const error = GatewayError.from(reason);
  return new ConnectError(
    error.message,
    TO_CODE[error.code],
    undefined,
    undefined,
    error,
  );
}

/** The GatewayError for a failed call to the service or register at `address`. */
export function fromRpcError(reason: unknown, address: string): GatewayError {
  if (reason instanceof GatewayError) return reason;
  const error = ConnectError.from(reason);
  const message = `${address}: ${error.rawMessage}`;
  switch (error.code) {
    case Code.InvalidArgument:
      return new GatewayError("invalid_argument", message, { cause: error });
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return new GatewayError(
        "unauthenticated",
        `${message} (check that every node uses the same secret)`,
        { cause: error },
      );
    case Code.DeadlineExceeded:
      return new GatewayError("deadline_exceeded", message, { cause: error });
    case Code.Unavailable:
    case Code.Canceled:
    case Code.Aborted:
    case Code.ResourceExhausted:
      return new GatewayError("unavailable", message, { cause: error });
    default:
      return new GatewayError("internal", message, { cause: error });
  }
}
