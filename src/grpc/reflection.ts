// gRPC server reflection (grpc.reflection.v1 and grpc.reflection.v1alpha), built from the same protobufjs
// Roots the server decodes with, so `grpcurl list`, `describe` and calls by name work with no .proto files.
//
// Invariants:
// - Descriptors come from protobufjs's descriptor extension (`Root#toDescriptor`), one FileDescriptorProto per
//   package. This module only completes what the extension leaves out: fully qualified type names, protoc's
//   map-entry names (`FooEntry`), and each file's `dependency` list. It never writes descriptor bytes by hand.
// - Every symbol (service, method, message, enum, nested type) maps to exactly one file; a file_containing_symbol
//   answer carries that file and all its transitive dependencies, dependencies first.
// - The descriptor index is rebuilt lazily when services were added since it was built.
// - A request for something unknown gets an error_response (NOT_FOUND) on the stream; the stream stays open.

import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor.js';
import type { ServerStreamCall } from './call.ts';
import { parseProto, type ServiceDefinition, serviceDefinition } from './proto.ts';
import type { ServiceRegistry } from './registry.ts';
import { Status } from './status.ts';

const reflectionProto = (pkg: string): string => `syntax = "proto3";
package ${pkg};
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    ExtensionRequest file_containing_extension = 5;
    string all_extension_numbers_of_type = 6;
    string list_services = 7;
  }
}
message ExtensionRequest {
  string containing_type = 1;
  int32 extension_number = 2;
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ExtensionNumberResponse all_extension_numbers_response = 5;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse {
  repeated bytes file_descriptor_proto = 1;
}
message ExtensionNumberResponse {
  string base_type_name = 1;
  repeated int32 extension_number = 2;
}
message ListServiceResponse {
  repeated ServiceResponse service = 1;
}
message ServiceResponse {
  string name = 1;
}
message ErrorResponse {
  int32 error_code = 1;
  string error_message = 2;
}
`;

interface ReflectionRequest {
  host?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type?: string; extension_number?: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
}
interface ReflectionResponse {
  valid_host: string;
  original_request: ReflectionRequest;
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

type FileProto = descriptor.IFileDescriptorProto;
type MessageProto = descriptor.IDescriptorProto;

interface IndexedFile {
  readonly proto: FileProto;
  bytes: Uint8Array | null;
  readonly deps: Set<string>;
}

/** Descriptors of a set of services, indexed by file name and by symbol. */
export class DescriptorIndex {
  readonly files = new Map<string, IndexedFile>();
  readonly symbols = new Map<string, string>(); // full name (no leading dot) -> file name
  readonly serviceNames: readonly string[];

  constructor(services: readonly ServiceDefinition[]) {
    this.serviceNames = services.map((s) => s.fullName);
    const roots = [...new Set(services.map((s) => s.root))];
    for (const root of roots) {
      const set = root.toDescriptor('proto3');
      for (const file of set.file as FileProto[]) this.#addFile(root, file);
    }
    for (const f of this.files.values()) this.#collectDeps(f);
  }

  #addFile(root: protobuf.Root, file: FileProto): void {
    const pkg = file.package ?? '';
    const prefix = pkg === '' ? '' : `${pkg}.`;
    for (const m of file.messageType ?? []) fixMessage(m, root.lookupType(prefix + m.name));
    const fallback = file.name ?? `${pkg.replace(/\./g, '_') || 'root'}.proto`;
    // Well-known types go to their canonical files (google/protobuf/empty.proto, ...), as protoc names them, so
    // clients that also know them (grpcurl, Python) see one file per name.
    const fileOf = (symbol: string): string =>
      (pkg === 'google.protobuf' ? WELL_KNOWN_FILES[symbol] : undefined) ?? fallback;
    const target = (name: string): FileProto => {
      let f = this.files.get(name);
      if (f === undefined) {
        f = {
          proto: { ...file, name, dependency: [], messageType: [], enumType: [], service: [] },
          bytes: null,
          deps: new Set(),
        };
        this.files.set(name, f);
      }
      return f.proto;
    };
    // First definition of a symbol wins (two roots may both hold e.g. google.protobuf).
    for (const m of file.messageType ?? []) {
      const name = fileOf(m.name ?? '');
      if (!this.#claim(prefix + m.name, name)) continue;
      target(name).messageType!.push(m);
      this.#indexNested(`${prefix}${m.name}`, m, name);
    }
    for (const e of file.enumType ?? []) {
      const name = fileOf(e.name ?? '');
      if (this.#claim(prefix + e.name, name)) target(name).enumType!.push(e);
    }
    for (const svc of file.service ?? []) {
      const name = fileOf(svc.name ?? '');
      if (!this.#claim(prefix + svc.name, name)) continue;
      target(name).service!.push(svc);
      for (const m of svc.method ?? []) this.#claim(`${prefix}${svc.name}.${m.name}`, name);
    }
  }

  #claim(symbol: string, file: string): boolean {
    if (this.symbols.has(symbol)) return false;
    this.symbols.set(symbol, file);
    return true;
  }

  #indexNested(fullName: string, m: MessageProto, file: string): void {
    for (const n of m.nestedType ?? []) {
      this.#claim(`${fullName}.${n.name}`, file);
      this.#indexNested(`${fullName}.${n.name}`, n, file);
    }
    for (const e of m.enumType ?? []) this.#claim(`${fullName}.${e.name}`, file);
  }

  #collectDeps(f: IndexedFile): void {
    const self = f.proto.name ?? '';
    const add = (typeName: string | null | undefined): void => {
      if (typeName === null || typeName === undefined || typeName === '') return;
      const file = this.symbols.get(typeName.replace(/^\./, ''));
      if (file !== undefined && file !== self) f.deps.add(file);
    };
    const walk = (m: MessageProto): void => {
      for (const fd of m.field ?? []) add(fd.typeName);
      for (const n of m.nestedType ?? []) walk(n);
    };
    for (const m of f.proto.messageType ?? []) walk(m);
    for (const s of f.proto.service ?? []) {
      for (const m of s.method ?? []) {
        add(m.inputType);
        add(m.outputType);
      }
    }
    f.proto.dependency = [...f.deps];
  }

  bytesOf(name: string): Uint8Array | undefined {
    const f = this.files.get(name);
    if (f === undefined) return undefined;
    f.bytes ??= descriptor.FileDescriptorProto.encode(f.proto).finish();
    return f.bytes;
  }

  /** The file and its transitive dependencies, dependencies first. */
  closure(name: string): Uint8Array[] {
    const order: string[] = [];
    const seen = new Set<string>();
    const visit = (n: string): void => {
      if (seen.has(n)) return;
      seen.add(n);
      for (const d of this.files.get(n)?.deps ?? []) visit(d);
      order.push(n);
    };
    visit(name);
    return order.map((n) => this.bytesOf(n)).filter((b): b is Uint8Array => b !== undefined);
  }

  /** All FileDescriptorProtos as one encoded FileDescriptorSet. */
  fileDescriptorSet(): Uint8Array {
    return descriptor.FileDescriptorSet.encode({
      file: [...this.files.values()].map((f) => f.proto),
    }).finish();
  }
}

/** The files protoc puts the well-known types in. */
const WELL_KNOWN_FILES: Readonly<Record<string, string>> = (() => {
  const files: Record<string, string> = {};
  const put = (file: string, names: string): void => {
    for (const n of names.split(' ')) files[n] = `google/protobuf/${file}.proto`;
  };
  put('any', 'Any');
  put('api', 'Api Method Mixin');
  put('duration', 'Duration');
  put('empty', 'Empty');
  put('field_mask', 'FieldMask');
  put('source_context', 'SourceContext');
  put('struct', 'Struct Value ListValue NullValue');
  put('timestamp', 'Timestamp');
  put('type', 'Type Field Enum EnumValue Option Syntax');
  put(
    'wrappers',
    'DoubleValue FloatValue Int64Value UInt64Value Int32Value UInt32Value BoolValue StringValue BytesValue',
  );
  put(
    'descriptor',
    'FileDescriptorSet FileDescriptorProto DescriptorProto ExtensionRangeOptions FieldDescriptorProto OneofDescriptorProto EnumDescriptorProto EnumValueDescriptorProto ServiceDescriptorProto MethodDescriptorProto FileOptions MessageOptions FieldOptions OneofOptions EnumOptions EnumValueOptions ServiceOptions MethodOptions UninterpretedOption SourceCodeInfo GeneratedCodeInfo Edition FeatureSet FeatureSetDefaults SymbolVisibility',
  );
  return files;
})();

/** protoc's name for the entry message of map field `name`: `my_map` -> `MyMapEntry`. */
function mapEntryName(field: string): string {
  const camel = field.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  return `${camel.charAt(0).toUpperCase()}${camel.slice(1)}Entry`;
}

/** Completes one message descriptor from its protobufjs Type: qualified type names, map entry names. */
function fixMessage(m: MessageProto, type: protobuf.Type): void {
  const nested = m.nestedType ?? [];
  for (const fd of m.field ?? []) {
    const pf = type.fields[fd.name ?? ''];
    if (pf === undefined) continue;
    if (pf instanceof protobuf.MapField) {
      const entryName = mapEntryName(pf.name);
      const entry = nested.find((n) => n.name === fd.typeName && n.options?.mapEntry === true);
      if (entry !== undefined) {
        entry.name = entryName;
        for (const ef of entry.field ?? []) {
          if (ef.name === 'value' && pf.resolvedType !== null) ef.typeName = pf.resolvedType.fullName;
        }
      }
      fd.typeName = `${type.fullName}.${entryName}`;
      continue;
    }
    if (pf.resolvedType !== null) fd.typeName = pf.resolvedType.fullName;
  }
  for (const n of nested) {
    if (n.options?.mapEntry === true) continue;
    const child = type.nested?.[n.name ?? ''];
    if (child instanceof protobuf.Type) fixMessage(n, child);
  }
}

type ReflectionCall = ServerStreamCall<ReflectionRequest, ReflectionResponse>;

function answer(index: DescriptorIndex, req: ReflectionRequest): ReflectionResponse {
  const res: ReflectionResponse = { valid_host: req.host ?? '', original_request: req };
  const notFound = (what: string): ReflectionResponse => {
    res.error_response = { error_code: Status.NOT_FOUND, error_message: what };
    return res;
  };
  if (Object.hasOwn(req, 'list_services')) {
    res.list_services_response = { service: index.serviceNames.map((name) => ({ name })) };
    return res;
  }
  if (typeof req.file_by_filename === 'string' && Object.hasOwn(req, 'file_by_filename')) {
    if (!index.files.has(req.file_by_filename)) return notFound(`file not found: ${req.file_by_filename}`);
    res.file_descriptor_response = { file_descriptor_proto: index.closure(req.file_by_filename) };
    return res;
  }
  if (typeof req.file_containing_symbol === 'string' && Object.hasOwn(req, 'file_containing_symbol')) {
    const file = index.symbols.get(req.file_containing_symbol.replace(/^\./, ''));
    if (file === undefined) return notFound(`symbol not found: ${req.file_containing_symbol}`);
    res.file_descriptor_response = { file_descriptor_proto: index.closure(file) };
    return res;
  }
  if (Object.hasOwn(req, 'file_containing_extension')) {
    return notFound('extensions are not supported');
  }
  if (
    typeof req.all_extension_numbers_of_type === 'string' &&
    Object.hasOwn(req, 'all_extension_numbers_of_type')
  ) {
    const t = req.all_extension_numbers_of_type.replace(/^\./, '');
    if (!index.symbols.has(t)) return notFound(`type not found: ${t}`);
    res.all_extension_numbers_response = { base_type_name: t, extension_number: [] };
    return res;
  }
  res.error_response = { error_code: Status.INVALID_ARGUMENT, error_message: 'empty reflection request' };
  return res;
}

/** Adds grpc.reflection.v1 and v1alpha ServerReflection to a server; they describe every service it serves. */
export function addReflectionServices(server: ServiceRegistry): void {
  let index: DescriptorIndex | null = null;
  let indexedCount = -1;
  const current = (): DescriptorIndex => {
    if (index === null || indexedCount !== server.services.length) {
      index = new DescriptorIndex(server.services);
      indexedCount = server.services.length;
    }
    return index;
  };
  const handler = async (call: ReflectionCall): Promise<void> => {
    for await (const req of call) {
      if (!call.write(answer(current(), req))) await call.drain();
    }
  };
  for (const pkg of ['grpc.reflection.v1', 'grpc.reflection.v1alpha']) {
    const file = `${pkg.replace(/\./g, '/')}/reflection.proto`;
    const def = serviceDefinition(parseProto(reflectionProto(pkg), file), `${pkg}.ServerReflection`);
    server.addService(def, { ServerReflectionInfo: handler });
  }
}
