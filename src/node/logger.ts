/**
 * The logger the node runtime writes to: the subset of a pino logger it uses (structured
 * fields first, then the message). Optional everywhere: without one, nothing is logged.
 */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}
