/**
 * Sequential specification of the raftkv key-value store, for the linearizability checker.
 *
 * Keys are independent, so histories are partitioned per key and the model state is the
 * value of one key: a string, or `null` when the key is absent.
 */
import { type Model, type Operation, partitionBy } from './linearizability.ts';

export type KvInput =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'delete'; readonly key: string }
  /** Compare-and-swap: set `value` iff the current value is `expected` (`null`: the key must be absent). */
  | { readonly kind: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

export type KvOutput =
  | { readonly kind: 'put' }
  | { readonly kind: 'get'; readonly value: string | null }
  | { readonly kind: 'delete'; readonly existed: boolean }
  | { readonly kind: 'cas'; readonly swapped: boolean };

/** The value of a single key; `null` means absent. */
export type KvState = string | null;

export type KvOperation = Operation<KvInput, KvOutput>;

/**
 * Apply one KV operation to the value of its key. Returns the output a correct store
 * produces and the new value. Exported so simulators and tests share one definition.
 */
export function applyKv(state: KvState, input: KvInput): { output: KvOutput; state: KvState } {
  switch (input.kind) {
    case 'put':
      return { output: { kind: 'put' }, state: input.value };
    case 'get':
      return { output: { kind: 'get', value: state }, state };
    case 'delete':
      return { output: { kind: 'delete', existed: state !== null }, state: null };
    case 'cas': {
      const swapped = state === input.expected;
      return { output: { kind: 'cas', swapped }, state: swapped ? input.value : state };
    }
  }
}

function sameOutput(a: KvOutput, b: KvOutput): boolean {
  switch (a.kind) {
    case 'put':
      return b.kind === 'put';
    case 'get':
      return b.kind === 'get' && b.value === a.value;
    case 'delete':
      return b.kind === 'delete' && b.existed === a.existed;
    case 'cas':
      return b.kind === 'cas' && b.swapped === a.swapped;
  }
}

const show = (v: string | null): string => (v === null ? 'absent' : JSON.stringify(v));

function describeKv(input: KvInput, output: KvOutput | null): string {
  let call: string;
  switch (input.kind) {
    case 'put':
      call = `put(${input.key}, ${show(input.value)})`;
      break;
    case 'get':
      call = `get(${input.key})`;
      break;
    case 'delete':
      call = `delete(${input.key})`;
      break;
    case 'cas':
      call = `cas(${input.key}, ${show(input.expected)} -> ${show(input.value)})`;
      break;
  }
  if (output === null) return `${call} -> ?`;
  switch (output.kind) {
    case 'put':
      return `${call} -> ok`;
    case 'get':
      return `${call} -> ${show(output.value)}`;
    case 'delete':
      return `${call} -> ${output.existed ? 'existed' : 'was absent'}`;
    case 'cas':
      return `${call} -> ${output.swapped ? 'swapped' : 'not swapped'}`;
  }
}

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    const r = applyKv(state, input);
    return { ok: output === null || sameOutput(r.output, output), state: r.state };
  },
  key: (state) => (state === null ? '-' : `=${state}`),
  partition: (history) => partitionBy(history, (input) => input.key),
  isReadOnly: (input) => input.kind === 'get',
  describeOperation: describeKv,
  describeState: show,
};

/*
 * The versioned KV model: the store as the KV service exposes it, where every key also has a
 * version (writes since its creation, 0 when absent), gets answer value and version, and a
 * compare-and-swap may compare the version instead of the value. Same per-key partitioning.
 */

export type KvvInput =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'delete'; readonly key: string }
  /** Set `value` iff the key holds `expected` (`null`: absent), or when `expectedVersion` is given, iff its version is that. */
  | {
      readonly kind: 'cas';
      readonly key: string;
      readonly expected: string | null;
      readonly expectedVersion?: number;
      readonly value: string;
    };

export type KvvOutput =
  | { readonly kind: 'put' }
  | { readonly kind: 'get'; readonly value: string | null; readonly version: number }
  | { readonly kind: 'delete'; readonly existed: boolean }
  | { readonly kind: 'cas'; readonly swapped: boolean };

export interface KvvState {
  readonly value: string | null;
  readonly version: number;
}

const ABSENT: KvvState = { value: null, version: 0 };

/** One operation on the value and version of its key: the output a correct store gives, and the next state. */
export function applyKvv(state: KvvState, input: KvvInput): { output: KvvOutput; state: KvvState } {
  const write = (value: string): KvvState => ({
    value,
    version: state.value === null ? 1 : state.version + 1,
  });
  switch (input.kind) {
    case 'put':
      return { output: { kind: 'put' }, state: write(input.value) };
    case 'get':
      return { output: { kind: 'get', value: state.value, version: state.version }, state };
    case 'delete':
      return { output: { kind: 'delete', existed: state.value !== null }, state: ABSENT };
    case 'cas': {
      const swapped =
        input.expectedVersion !== undefined && input.expectedVersion > 0
          ? state.value !== null && state.version === input.expectedVersion
          : state.value === input.expected;
      return { output: { kind: 'cas', swapped }, state: swapped ? write(input.value) : state };
    }
  }
}

function sameKvv(a: KvvOutput, b: KvvOutput): boolean {
  switch (a.kind) {
    case 'get':
      return b.kind === 'get' && b.value === a.value && b.version === a.version;
    case 'delete':
      return b.kind === 'delete' && b.existed === a.existed;
    case 'cas':
      return b.kind === 'cas' && b.swapped === a.swapped;
    case 'put':
      return b.kind === 'put';
  }
}

export const kvvModel: Model<KvvState, KvvInput, KvvOutput> = {
  init: () => ABSENT,
  step(state, input, output) {
    const r = applyKvv(state, input);
    return { ok: output === null || sameKvv(r.output, output), state: r.state };
  },
  key: (s) => (s.value === null ? '-' : `${s.version}=${s.value}`),
  partition: (history) => partitionBy(history, (input) => input.key),
  isReadOnly: (input) => input.kind === 'get',
  describeOperation(input, output) {
    const call =
      input.kind === 'cas' && input.expectedVersion !== undefined
        ? `cas(${input.key}, version ${input.expectedVersion} -> ${show(input.value)})`
        : describeKv(input as KvInput, null).slice(0, -' -> ?'.length);
    if (output === null) return `${call} -> ?`;
    switch (output.kind) {
      case 'put':
        return `${call} -> ok`;
      case 'get':
        return `${call} -> ${show(output.value)} (version ${output.version})`;
      case 'delete':
        return `${call} -> ${output.existed ? 'existed' : 'was absent'}`;
      case 'cas':
        return `${call} -> ${output.swapped ? 'swapped' : 'not swapped'}`;
    }
  },
  describeState: (s) => (s.value === null ? 'absent' : `${show(s.value)} (version ${s.version})`),
};
