// GatewayError and gRPC status codes, translated into each other here and
// only here: inside the gateway every failure is a GatewayError; the gRPC
// edge (the RPC server, calls to peers and registers, the hand-framed
// Deliver stream, and the error frame of the delivery port, which borrows
// gRPC's numbering) turns it into a status code and back.

import { Code, ConnectError } from "npm:@connectrpc/connect@2.2.0";
import { GatewayError, type GatewayErrorCode } from "../../errors.ts";

const TO_CODE: Record<GatewayErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  unavailable: Code.Unavailable,
  resource_exhausted: Code.ResourceExhausted,
  deadline_exceeded: Code.DeadlineExceeded,
  incomplete: Code.Unavailable,
  closed: Code.Unavailable,
  internal: Code.Internal,
};

/** The gRPC status code (1 to 16) that answers `error`. */
export function grpcCodeOf(error: GatewayError): number {
  return TO_CODE[error.code];
}

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

/**
 * The GatewayError for a gRPC status that a call to the service or
 * register at `address` ended with; codes outside 1 to 16 count as
 * `internal`.
 */
export function errorOfStatus(
  code: number,
  message: string,
  address: string,
  cause?: unknown,
): GatewayError {
  const text = `${address}: ${message}`;
  const options = cause === undefined ? {} : { cause };
  switch (code) {
    case Code.InvalidArgument:
      return new GatewayError("invalid_argument", text, options);
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return new GatewayError(
        "unauthenticated",
        `${text} (check that every node uses the same secret)`,
        options,
      );
    case Code.DeadlineExceeded:
      return new GatewayError("deadline_exceeded", text, options);
    case Code.ResourceExhausted:
      return new GatewayError("resource_exhausted", text, options);
    case Code.Unavailable:
    case Code.Canceled:
    case Code.Aborted:
      return new GatewayError("unavailable", text, options);
    default:
      return new GatewayError("internal", text, options);
  }
}

/**
 * The GatewayError for a failed call to the service or register at
 * `address`: a GatewayError as it is, anything else (a ConnectError, a
 * socket error) by its gRPC code.
 */
export function fromRpcError(reason: unknown, address: string): GatewayError {
  if (reason instanceof GatewayError) return reason;
  const error = ConnectError.from(reason);
  return errorOfStatus(error.code, error.rawMessage, address, error);
}
