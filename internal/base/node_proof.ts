// What a node sends instead of the cluster secret: an HMAC of the secret
// over a nonce from the node it calls and the address it dialed, and what
// the callee answers to prove that it knows the secret too (the protocol
// is in proto/websocket/v1/node_auth.proto).
//
// Why the address: a proof that a service made for the address it dialed
// is worth nothing at any other address. So a stranger that got itself
// into the member list (through a register without a secret, say) and is
// dialed by a real service cannot hand the proof it got on to a real node.
//
// Why not for registers: a register does not know under which name
// services reach it (a DNS name, a load balancer, a NAT address), so it
// cannot check one; proofs for registers are bound to the fixed
// REGISTER_BINDING instead, and are good at any register of the cluster,
// all of which know the secret anyway. What a proof for a register is not
// protected against is a man in the middle between a service and the
// register it was told to dial: only TLS authenticates that name.

import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";

/** The scheme of the `authorization` value that carries a proof. */
export const NODE_PROOF_SCHEME = "WsgateNode";

/** What proofs for a register are bound to, instead of an address. */
export const REGISTER_BINDING = "register";

/** Bytes of a caller's nonce, at least and at most. */
export const CLIENT_NONCE_BYTES = { min: 16, max: 64 } as const;

const LABEL = "wsgate node proof v1";

/** What proofs for the service announced at `address` are bound to. */
export function peerBinding(address: string): string {
  return `peer ${address}`;
}

/**
 * The caller's proof: that it knows `secret`, for the node with `binding`,
 * over the nonce that node gave it. Unpadded base64url.
 */
export function callerProof(
  secret: string,
  nonce: string,
  binding: string,
): string {
  return hmac(secret, `${LABEL}\ncaller\n${binding}\n${nonce}`);
}

/**
 * The callee's proof: that the node with `binding` knows `secret`, over
 * the caller's nonce. Unpadded base64url.
 */
export function calleeProof(
  secret: string,
  clientNonce: Uint8Array,
  binding: string,
): string {
  const nonce = Buffer.from(clientNonce).toString("base64url");
  return hmac(secret, `${LABEL}\ncallee\n${binding}\n${nonce}`);
}

/** Whether two proofs are equal, in constant time for equal lengths. */
export function sameProof(given: string, expected: string): boolean {
  const a = Buffer.from(given, "utf8");
  const b = Buffer.from(expected, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A nonce and the proof over it, as they travel. */
export interface NodeToken {
  readonly nonce: string;
  readonly proof: string;
}

/** `nonce.proof`: what follows the scheme, and what a delivery hello carries. */
export function formatNodeToken(token: NodeToken): string {
  return `${token.nonce}.${token.proof}`;
}

/**
 * The token (`nonce.proof`) of an `authorization` value with the
 * {@linkcode NODE_PROOF_SCHEME}, or undefined for another one.
 */
export function nodeTokenOf(authorization: string): string | undefined {
  const prefix = `${NODE_PROOF_SCHEME} `;
  return authorization.startsWith(prefix)
    ? authorization.slice(prefix.length)
    : undefined;
}

/** The nonce and proof of `value` (`nonce.proof`), or undefined. */
export function parseNodeToken(value: string): NodeToken | undefined {
  const dot = value.indexOf(".");
  if (dot <= 0 || dot === value.length - 1) return undefined;
  return { nonce: value.slice(0, dot), proof: value.slice(dot + 1) };
}

function hmac(secret: string, text: string): string {
  return createHmac("sha256", secret).update(text).digest("base64url");
}
