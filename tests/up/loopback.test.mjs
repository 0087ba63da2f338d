// `mlstream up` is a development mode without authentication or an origin
// check: its gateway listens on 127.0.0.1 unless GATEWAY_HOST says
// otherwise, and the banner prints the address actually bound.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { networkInterfaces } from "node:os";
import { startUp } from "./harness.mjs";

// A non-loopback IPv4 address of this machine, or undefined.
function externalIPv4() {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list || []) if (a.family === "IPv4" && !a.internal) return a.address;
  return undefined;
}

// Resolves "connected" or the connect error's code, within 3 s.
function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 3000 });
    s.once("connect", () => { s.destroy(); resolve("connected"); });
    s.once("timeout", () => { s.destroy(); resolve("timeout"); });
    s.once("error", (e) => resolve(e.code));
  });
}

test("up's gateway listens on loopback by default and says so", async (t) => {
  const up = await startUp([], { GATEWAY_HOST: null });
  try {
    const port = Number(new URL(up.base).port);
    assert.match(up.output(), new RegExp(`GraphQL\\s+http://127\\.0\\.0\\.1:${port}/graphql`));
    assert.equal(await tryConnect("127.0.0.1", port), "connected");
    const ext = externalIPv4();
    if (!ext) {
      t.skip("this machine has no non-loopback IPv4 address to try");
      return;
    }
    const r = await tryConnect(ext, port);
    assert.notEqual(r, "connected", `the gateway answered on ${ext}:${port}`);
  } finally {
    const exit = await up.stop();
    assert.equal(exit.code, 0, up.output());
  }
});

test("up honours an explicit GATEWAY_HOST and prints the address bound", async () => {
  const ext = externalIPv4();
  const up = await startUp([], { GATEWAY_HOST: "0.0.0.0" });
  try {
    const port = Number(new URL(up.base).port);
    assert.match(up.output(), new RegExp(`GraphQL\\s+http://0\\.0\\.0\\.0:${port}/graphql`));
    assert.match(up.output(), /warn .*listens on 0\.0\.0\.0, beyond this machine/);
    if (ext) assert.equal(await tryConnect(ext, port), "connected");
  } finally {
    const exit = await up.stop();
    assert.equal(exit.code, 0, up.output());
  }
});
