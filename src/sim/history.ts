import type { Simulator } from './simulator.ts';
export function checkKvHistory(sim: Simulator): string | null {
  void sim;
  return null;
}
