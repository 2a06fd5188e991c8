/**
 * Temporary directories for tests: created with mkdtemp under os.tmpdir()
 * (short paths, so socket paths stay under the 107-byte sun_path limit) and
 * removed afterwards.
 *
 *   const tmp = useTempDir();          // in a describe/file: made in beforeAll, removed in afterAll
 *   const sock = tmp.join("s.sock");
 *
 *   await withTempDir(async (dir) => { ... });
 *   using dir = tempDir();             // removed at scope exit
 * @module
 */
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TempDir extends Disposable {
  readonly path: string;
  join(...parts: string[]): string;
  remove(): void;
}

/** A fresh directory `<tmpdir>/lwmsg-<prefix>XXXXXX`; `remove()` (or `using`) deletes it recursively. */
export function tempDir(prefix = ""): TempDir {
  const path = mkdtempSync(join(tmpdir(), `lwmsg-${prefix}`));
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    rmSync(path, { recursive: true, force: true });
  };
  return { path, join: (...parts) => join(path, ...parts), remove, [Symbol.dispose]: remove };
}

/** Runs `fn` with a fresh temp dir and removes it afterwards, even on failure. */
export async function withTempDir<T>(fn: (dir: string) => T | Promise<T>, prefix = ""): Promise<T> {
  const d = tempDir(prefix);
  try {
    return await fn(d.path);
  } finally {
    d.remove();
  }
}

/**
 * A temp dir for the enclosing file or describe block: created in beforeAll,
 * removed in afterAll. `path`/`join` are valid from beforeAll on.
 */
export function useTempDir(prefix = ""): { readonly path: string; join(...parts: string[]): string } {
  let d: TempDir | null = null;
  beforeAll(() => {
    d = tempDir(prefix);
  });
  afterAll(() => d?.remove());
  const get = () => {
    if (!d) throw new Error("useTempDir: used before beforeAll ran");
    return d;
  };
  return {
    get path() {
      return get().path;
    },
    join: (...parts: string[]) => get().join(...parts),
  };
}
