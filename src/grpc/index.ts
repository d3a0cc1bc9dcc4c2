// Public API of the lean gRPC server layer (node:http2 + protobufjs). See docs/grpc.md.
//
// Invariants: this module only re-exports; nothing here knows about raftkv's services.

export type {
  GrpcLogger,
  Handler,
  ServerCall,
  ServerStreamCall,
  StreamHandler,
  UnaryHandler,
} from './call.ts';
export type { FrameSink } from './framing.ts';
export { ACCEPT_ENCODING, Deframer, encodeFrame, parseTimeout } from './framing.ts';
export { HealthService, type ServingStatus } from './health.ts';
export {
  Metadata,
  type MetadataValue,
  type OutgoingMetadata,
  percentDecode,
  percentEncode,
} from './metadata.ts';
export {
  type LoadProtoOptions,
  loadProtoFiles,
  type MethodDefinition,
  parseProto,
  type ServiceDefinition,
  serviceDefinition,
} from './proto.ts';
export { DescriptorIndex } from './reflection.ts';
export type { ServiceOptions, ServiceRegistry } from './registry.ts';
export {
  createGrpcServer,
  type GrpcServer,
  type GrpcServerOptions,
  type GrpcServerStats,
  type TlsOptions,
} from './server.ts';
export { GrpcError, type GrpcErrorOptions, Status, type StatusCode, statusName } from './status.ts';
