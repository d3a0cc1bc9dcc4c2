// Loading .proto files with protobufjs and turning a service into the definition the server serves.
//
// Invariants:
// - Field names are kept exactly as written in the .proto (`keepCase: true`), on both decode and encode.
// - A ServiceDefinition is built from a fully resolved Root: every method's request and response Type is known,
//   and `root` is the Root those types live in (reflection describes the service from it).
// - Method paths are `/<package>.<Service>/<Method>`, the gRPC wire path.

import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

export interface MethodDefinition {
  /** Method name as in the .proto, e.g. `Put`. */
  readonly name: string;
  /** Wire path, e.g. `/raft.KeyValueService/Put`. */
  readonly path: string;
  readonly requestType: protobuf.Type;
  readonly responseType: protobuf.Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

export interface ServiceDefinition {
  /** Fully qualified service name without a leading dot, e.g. `raft.KeyValueService`. */
  readonly fullName: string;
  readonly methods: readonly MethodDefinition[];
  /** The resolved Root the types come from; reflection describes the service from it. */
  readonly root: protobuf.Root;
}

export interface LoadProtoOptions {
  /** Directories searched, in order, for imports that are not relative to the importing file. */
  readonly includeDirs?: readonly string[];
}

/** Loads and resolves .proto files into a Root, keeping field names as written. */
export function loadProtoFiles(
  files: string | readonly string[],
  options: LoadProtoOptions = {},
): protobuf.Root {
  const root = new protobuf.Root();
  const dirs = options.includeDirs ?? [];
  if (dirs.length > 0) {
    root.resolvePath = (origin: string, target: string): string => {
      if (isAbsolute(target)) return target;
      for (const dir of dirs) {
        const p = join(dir, target);
        if (existsSync(p)) return p;
      }
      return protobuf.util.path.resolve(origin, target);
    };
  }
  root.loadSync(typeof files === 'string' ? files : [...files], { keepCase: true });
  root.resolveAll();
  return root;
}

/** Parses .proto source text (e.g. embedded in a module) into a resolved Root; `filename` names it. */
export function parseProto(source: string, filename: string): protobuf.Root {
  const root = new protobuf.Root();
  protobuf.parse(source, root, { keepCase: true });
  root.resolveAll();
  for (const t of allTypes(root)) t.filename = filename;
  return root;
}

function* allTypes(ns: protobuf.NamespaceBase): Generator<protobuf.ReflectionObject> {
  for (const o of ns.nestedArray) {
    yield o;
    if (o instanceof protobuf.Namespace || o instanceof protobuf.Type) yield* allTypes(o);
  }
}

/** The definition of one service of a resolved Root, e.g. `serviceDefinition(root, 'raft.KeyValueService')`. */
export function serviceDefinition(root: protobuf.Root, fullName: string): ServiceDefinition {
  const svc = root.lookupService(fullName);
  const name = svc.fullName.replace(/^\./, '');
  const methods: MethodDefinition[] = [];
  for (const m of svc.methodsArray) {
    m.resolve();
    if (m.resolvedRequestType === null || m.resolvedResponseType === null) {
      throw new Error(`method ${name}.${m.name} has unresolved types`);
    }
    methods.push({
      name: m.name,
      path: `/${name}/${m.name}`,
      requestType: m.resolvedRequestType,
      responseType: m.resolvedResponseType,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
    });
  }
  return { fullName: name, methods, root };
}
