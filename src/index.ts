// The raftkv package's root: a small facade over the subpath entry points, with what most
// applications start from. Everything else lives under its own subpath:
//   raftkv/raft       the pure core (no runtime dependency at all)
//   raftkv/node       RaftNode, the runtime around the core, and its errors
//   raftkv/storage    the RaftStorage contract, FileStorage, MemoryStorage, inspect, storage errors
//   raftkv/transport  the Transport boundary, the in-memory network, the gRPC peer transport
//   raftkv/server     the KV server assembly and the KV state machine
//   raftkv/client     the gRPC client of raft.KeyValueService
// Importing the root loads the gRPC stack (the client and the peer transport); an application
// that wants the core alone imports `raftkv/raft`.
export { RaftKvClient, type RaftKvClientOptions, RaftKvError } from './client/index.ts';
export { RaftNode, RaftNodeError, type RaftNodeOptions, type StateMachine } from './node/index.ts';
export { bootstrapState, Raft, type RaftConfig, SeededRng } from './raft/index.ts';
export { type RaftKvServer, type ServerConfig, startServer } from './server/index.ts';
export { FileStorage, MemoryStorage, type RaftStorage } from './storage/index.ts';
export { GrpcTransport, MemoryNetwork, type Transport } from './transport/index.ts';
