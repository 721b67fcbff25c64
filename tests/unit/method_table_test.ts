// The method table (internal/api/method_table.ts) against the Api type and
// gateway.proto: every Api method has an entry (the table's type checks
// that at compile time) and a cluster implementation of its route; every
// RPC of GatewayService carries one method; every argument and result goes
// through its gRPC fields and its JSON field unchanged.

import assert from "node:assert/strict";
import {
  create,
  type DescField,
  type DescMessage,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import type { ClientInfo, Message } from "../../mod.ts";
import { GatewayService } from "../../proto/gen/websocket/v1/gateway_pb.ts";
import type { ArgKind, Fields, ResultKind } from "../../internal/api/codecs.ts";
import {
  argCodecsOf,
  MAX_ARGS,
  METHOD_NAMES,
  METHODS,
} from "../../internal/api/method_table.ts";
import { CLUSTER_METHODS } from "../../internal/cluster/cluster_methods.ts";

/** A field's protobuf type, as `.proto` would spell it. */
function typeOf(field: DescField): string {
  switch (field.fieldKind) {
    case "scalar":
      return (field.presence === 1 ? "optional " : "") +
        scalarName(field.scalar);
    case "message":
      return `message ${field.message.typeName}`;
    case "enum":
      return `enum ${field.enum.typeName}`;
    case "list":
      return field.listKind === "scalar"
        ? `repeated ${scalarName(field.scalar)}`
        : `repeated ${field.listKind}`;
    case "map":
      return `map<${scalarName(field.mapKey)},${
        field.mapKind === "message"
          ? field.message.typeName
          : field.mapKind === "scalar"
          ? scalarName(field.scalar)
          : "enum"
      }>`;
  }
}

function scalarName(scalar: number): string {
  // ScalarType: 4 uint64, 8 bool, 9 string.
  return { 4: "uint64", 8: "bool", 9: "string" }[scalar] ?? `scalar ${scalar}`;
}

const ARG_TYPES: Record<ArgKind, string> = {
  clientId: "string",
  uid: "string",
  group: "string",
  names: "repeated string",
  message: "message websocket.v1.Payload",
  optionalMessage: "message websocket.v1.Payload",
  sendOptions: "repeated string",
  info: "map<string,string>",
};

const RESULT_TYPES: Record<ResultKind, string | undefined> = {
  none: undefined,
  flag: "bool",
  count: "uint64",
  strings: "repeated string",
  optionalString: "optional string",
  optionalInfo: "message websocket.v1.ClientInfo",
  infos: "map<string,websocket.v1.ClientInfo>",
};

/** Values of each kind of argument, as a caller passes them. */
const ARG_SAMPLES: Record<ArgKind, unknown[]> = {
  clientId: ["0123456789ab.1z"],
  uid: ["alice"],
  group: ["room:lobby"],
  names: [["alice", "bob"], ["solo"]],
  message: ["héllo ✓", new Uint8Array([0, 1, 255])],
  optionalMessage: ["bye", new Uint8Array([7]), undefined],
  sendOptions: [{ exclude: ["0123456789ab.2"] }, { exclude: [] }],
  info: [{ plan: "pro", region: "eu" }, {}],
};

/** Results of each kind, as a method resolves with them. */
const RESULT_SAMPLES: Record<ResultKind, unknown[]> = {
  none: [undefined],
  flag: [true, false],
  count: [0, 41],
  strings: [["a", "b"], []],
  optionalString: ["alice", undefined],
  optionalInfo: [{ plan: "pro" }, {}, undefined],
  infos: [{ "0123456789ab.1": { plan: "pro" } }, {}],
};

function fieldsOf(message: DescMessage): Map<string, DescField> {
  return new Map(message.fields.map((f) => [f.localName, f]));
}

/** A JSON body as a backend sends it, carrying `value` of `kind`. */
function jsonOf(kind: ArgKind, name: string, value: unknown): Fields {
  if (kind === "message" || kind === "optionalMessage") {
    if (value === undefined) return {};
    return typeof value === "string"
      ? { message: value }
      : { messageBase64: btoa(String.fromCharCode(...value as Uint8Array)) };
  }
  if (kind === "sendOptions") {
    return { exclude: (value as { exclude: string[] }).exclude };
  }
  return { [name]: value };
}

Deno.test("the method table, the Api and gateway.proto agree", async (t) => {
  await t.step(
    "every RPC but Deliver and the session takeover carries exactly one method",
    () => {
      // Services' own calls: deliveries, and moving a session
      // (docs/recovery.md).
      const own = new Set([
        "deliver",
        "takeOverSession",
        "fenceSession",
        "handOverSession",
      ]);
      const rpcs = Object.keys(GatewayService.method).filter((m) => !own.has(m))
        .sort();
      const carried = METHOD_NAMES.filter((m) =>
        METHODS[m].aliasOf === undefined
      )
        .map((m) => METHODS[m].rpc).sort();
      assert.deepEqual(carried, rpcs);
    },
  );

  await t.step("no method takes more than MAX_ARGS arguments", () => {
    for (const name of METHOD_NAMES) {
      assert.ok(argCodecsOf(name).length <= MAX_ARGS, name);
    }
  });

  await t.step("an alias names another method with the same RPC", () => {
    for (const name of METHOD_NAMES) {
      const alias = METHODS[name].aliasOf;
      if (alias === undefined) continue;
      assert.equal(METHODS[alias].rpc, METHODS[name].rpc, name);
      assert.equal(METHODS[alias].aliasOf, undefined, name);
    }
  });

  await t.step("requests have scope and one field per argument", () => {
    for (const name of METHOD_NAMES) {
      const spec = METHODS[name];
      const fields = fieldsOf(GatewayService.method[spec.rpc].input);
      assert.equal(
        fields.get("scope") && typeOf(fields.get("scope")!),
        "enum websocket.v1.Scope",
        `${name}: scope`,
      );
      const codecs = argCodecsOf(name);
      assert.deepEqual(
        codecs.map((c) => c.field).sort(),
        [...fields.keys()].filter((f) => f !== "scope").sort(),
        `${name}: the request's fields are its arguments`,
      );
      for (const codec of codecs) {
        assert.equal(
          typeOf(fields.get(codec.field)!),
          ARG_TYPES[codec.kind],
          `${name}(${codec.field}): ${codec.kind}`,
        );
      }
    }
  });

  await t.step("responses have the result's field and nothing else", () => {
    for (const name of METHOD_NAMES) {
      const { result, rpc } = METHODS[name];
      const fields = fieldsOf(GatewayService.method[rpc].output);
      const expected = RESULT_TYPES[result.kind];
      assert.deepEqual(
        [...fields.keys()],
        result.field === undefined ? [] : [result.field],
        name,
      );
      if (result.field !== undefined) {
        assert.equal(typeOf(fields.get(result.field)!), expected, name);
      }
    }
  });

  await t.step("arguments survive the gRPC request and the JSON body", () => {
    for (const name of METHOD_NAMES) {
      const { rpc } = METHODS[name];
      const schema = GatewayService.method[rpc].input;
      for (const codec of argCodecsOf(name)) {
        for (const value of ARG_SAMPLES[codec.kind]) {
          const request: Fields = {};
          codec.toRequest(value, request);
          const decoded = fromBinary(
            schema,
            toBinary(schema, create(schema, request as never)),
          );
          assert.deepEqual(
            codec.fromRequest(decoded as unknown as Fields),
            value,
            `${name}(${codec.field}) over gRPC`,
          );
          assert.deepEqual(
            codec.fromJson(jsonOf(codec.kind, codec.json, value)),
            value,
            `${name}(${codec.json}) over JSON`,
          );
        }
      }
    }
  });

  await t.step("results survive the gRPC response", () => {
    for (const name of METHOD_NAMES) {
      const { result, rpc } = METHODS[name];
      const schema = GatewayService.method[rpc].output;
      for (const value of RESULT_SAMPLES[result.kind]) {
        const decoded = fromBinary(
          schema,
          toBinary(
            schema,
            create(schema, result.toResponse(value as never) as never),
          ),
        );
        assert.deepEqual(
          result.fromResponse(decoded as unknown as Fields),
          value,
          `${name} answers ${JSON.stringify(value)}`,
        );
      }
    }
  });

  await t.step("every method's cluster implementation fits its route", () => {
    assert.deepEqual(
      Object.keys(CLUSTER_METHODS).sort(),
      [...METHOD_NAMES].sort(),
    );
    for (const name of METHOD_NAMES) {
      const { route } = METHODS[name];
      const impl = CLUSTER_METHODS[name];
      const fits = route === "owner"
        ? impl.kind === "owned" ||
          (impl.kind === "delivered" && impl.to === "owner")
        : route === "everyone"
        ? impl.kind === "gathered" || impl.kind === "derived"
        : impl.kind === "delivered";
      assert.ok(fits, `${name}: route ${route}, implementation ${impl.kind}`);
      if (route === "owner") {
        assert.equal(argCodecsOf(name)[0]?.kind, "clientId", name);
      }
      if (impl.kind === "derived") {
        assert.deepEqual(
          argCodecsOf(impl.from).map((c) => c.kind),
          argCodecsOf(name).map((c) => c.kind),
          `${name} is made from ${impl.from}, which takes the same arguments`,
        );
      }
    }
  });
});

// Samples keep their types honest.
const _message: Message = ARG_SAMPLES.message[0] as Message;
const _info: ClientInfo = ARG_SAMPLES.info[0] as ClientInfo;
void _message;
void _info;
