/** `Listener` lives beside {@link Connection} in lib/connection.ts (one module, no import circle); kept as an entry point. */
export { Listener } from "./connection.ts";
export type { ListenOptions } from "./connection.ts";
