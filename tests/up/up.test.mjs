// `mlstream up --demo`: events produced with kcat into the embedded broker
// reach a real graphql-ws client, next to the demo stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { MLSTREAM, startUp, waitFor } from "./harness.mjs";

test("kcat events arrive over graphql-ws with every field", async () => {
  const up = await startUp(["--demo"], { ML_DEMO_RATE: "50" });
  const client = createClient({ url: up.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const got = [];
  let demoSeen = 0;
  const query = `subscription ($m: String!) { mlInferenceStream(modelId: $m) {
      inferenceId modelId inputId predictions latencyMs receivedAt publishedAt metadata } }`;
  const stopKcat = client.subscribe({ query, variables: { m: "kcat-model" } }, {
    next: (r) => got.push(r), error: (e) => got.push({ error: e }), complete: () => {} });
  const stopDemo = client.subscribe({ query, variables: { m: "threat-detector-v1" } }, {
    next: () => { demoSeen++; }, error: () => {}, complete: () => {} });
  try {
    await waitFor(() => demoSeen > 0, 20000, "a demo prediction");
    const lines = [];
    for (let i = 0; i < 20; i++)
      lines.push(JSON.stringify({ model_id: "kcat-model", input_id: `k-${i}`,
        features: [[i, i + 0.5, -i - 1]], metadata: { tenant: "blue-team", ts: 1732665599123456789 } }));
    execFileSync("kcat", ["-P", "-b", up.kafka, "-t", "ml.inference"], { input: lines.join("\n") + "\n" });
    await waitFor(() => got.length >= 20, 20000, "20 kcat predictions");
    assert.equal(got.length, 20);
    const byId = new Map(got.map((r) => [r.data.mlInferenceStream.inputId, r.data.mlInferenceStream]));
    for (let i = 0; i < 20; i++) {
      const p = byId.get(`k-${i}`);
      assert.ok(p, `k-${i} arrived`);
      assert.equal(p.modelId, "kcat-model");
      assert.deepEqual(p.predictions, [[i, i + 0.5, -i - 1]]);
      assert.match(p.inferenceId, /^[0-9a-f-]{36}$/);
      assert.ok(p.latencyMs >= 0 && p.latencyMs < 1000);
      assert.match(p.receivedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(p.metadata.tenant, "blue-team");
    }
    // the banner says where everything is and how to send an event
    assert.match(up.output(), /Kafka bootstrap\s+127\.0\.0\.1:\d+\s+\(embedded: in memory, not durable\)/);
    assert.match(up.output(), /kcat -P -b 127\.0\.0\.1:\d+ -t ml\.inference/);
  } finally {
    stopKcat(); stopDemo();
    await client.dispose();
    const exit = await up.stop();
    assert.equal(exit.code, 0, up.output());
  }
});

test("a port in use is a clear error naming it", async () => {
  const up = await startUp();
  try {
    const port = up.kafka.split(":")[1];
    let failed;
    try {
      const env = { ...process.env, ML_EMBEDDED_KAFKA_PORT: port, GATEWAY_PORT: "0" };
      delete env.KAFKA_BOOTSTRAP_SERVERS; // the embedded broker, not a real one
      delete env.REDIS_URL;
      execFileSync(MLSTREAM, ["up"], { env, stdio: "pipe", timeout: 30000 });
    } catch (e) { failed = e; }
    assert.ok(failed, "a second up on the same port fails");
    assert.equal(failed.status, 2);
    assert.match(String(failed.stderr), new RegExp(`${port}.*in use|in use.*${port}`));
    assert.match(String(failed.stderr), /ML_EMBEDDED_KAFKA_PORT/);
  } finally {
    await up.stop();
  }
});
