// Starts `mlstream up` on free ports and stops it; shared by the tests here.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, "..", "..");
export const MLSTREAM = process.env.MLSTREAM_BIN || path.join(ROOT, "build", "mlstream");

export async function freePort() {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  return port;
}

export async function waitFor(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Runs `mlstream up` with the given extra arguments; resolves once /healthz
// answers. The returned object has the ports, the output so far and stop().
// A free port can be taken by another process between freePort() and up's
// bind (the ephemeral range is shared): when up says a port it was given
// here is in use, it is started again on new ones.
export async function startUp(args = [], extraEnv = {}) {
  const ours = !("GATEWAY_PORT" in extraEnv) && !("ML_EMBEDDED_KAFKA_PORT" in extraEnv);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startUpOnce(args, extraEnv);
    } catch (e) {
      if (!ours || attempt === 3 || !/"code":2[,}][\s\S]*port already in use/.test(e.message)) throw e;
    }
  }
}

async function startUpOnce(args, extraEnv) {
  const kafkaPort = await freePort();
  const gatewayPort = await freePort();
  const env = { ...process.env, ML_EMBEDDED_KAFKA_PORT: String(kafkaPort),
                GATEWAY_HOST: "127.0.0.1", GATEWAY_PORT: String(gatewayPort), ...extraEnv };
  delete env.KAFKA_BOOTSTRAP_SERVERS;
  delete env.REDIS_URL;
  // a setting given as null is left unset (e.g. GATEWAY_HOST, for up's default)
  for (const [k, v] of Object.entries(extraEnv)) if (v === null) delete env[k];
  const child = spawn(MLSTREAM, ["up", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => { output += d; });
  child.stderr.on("data", (d) => { output += d; });
  let exited = null;
  child.on("exit", (code, sig) => { exited = { code, sig }; });
  const base = `http://127.0.0.1:${gatewayPort}`;
  await waitFor(async () => {
    if (exited) throw new Error(`mlstream up exited ${JSON.stringify(exited)}:\n${output}`);
    try { return (await fetch(base + "/healthz")).status === 200; } catch { return false; }
  }, 30000, "mlstream up /healthz");
  return {
    kafka: `127.0.0.1:${kafkaPort}`, base, ws: `ws://127.0.0.1:${gatewayPort}/graphql`,
    output: () => output,
    async stop() {
      if (exited) return exited;
      child.kill("SIGINT");
      await waitFor(() => exited, 30000, "mlstream up to exit");
      return exited;
    },
  };
}
