// A poison message must not stall `mlstream up`: a 999,900-byte line that is
// not JSON is too large for the dead-letter topic whole, so a truncated
// dead letter replaces it, and the events after it still arrive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { startUp, waitFor } from "./harness.mjs";

test("a 999,900-byte non-JSON event does not stall up", async () => {
  const up = await startUp([]);
  const client = createClient({ url: up.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const got = [];
  const query = `subscription { mlInferenceStream(modelId: "after-poison") { inputId predictions } }`;
  const stop = client.subscribe({ query }, {
    next: (r) => got.push(r), error: (e) => got.push({ error: e }), complete: () => {} });
  try {
    const kcat = (input) => execFileSync("kcat", ["-P", "-b", up.kafka, "-t", "ml.inference",
      "-X", "message.max.bytes=2000000"], { input, maxBuffer: 1 << 24 });
    kcat("x".repeat(999900) + "\n");
    const lines = [];
    for (let i = 0; i < 20; i++)
      lines.push(JSON.stringify({ model_id: "after-poison", input_id: `a-${i}`, features: [i] }));
    kcat(lines.join("\n") + "\n");
    await waitFor(() => got.length >= 20, 30000, "the 20 events after the poison message");
    assert.deepEqual(got.map((r) => r.data.mlInferenceStream.inputId).sort(),
      Array.from({ length: 20 }, (_, i) => `a-${i}`).sort());
    await waitFor(() => /truncated dead letter/.test(up.output()), 10000,
      "the log line about the truncated dead letter");
  } finally {
    stop();
    await client.dispose();
    const exit = await up.stop();
    assert.equal(exit.code, 0, up.output());
  }
});
