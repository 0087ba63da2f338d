// The dashboard in Debian's headless Chromium: rows of predictions and a
// drawn latency chart appear; a screenshot is kept as a test artifact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, startUp } from "./harness.mjs";
import { openPublisher, prediction, startGateway, startRedis } from "../e2e/helpers.mjs";

const LAUNCH = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

test("dashboard shows live predictions and a latency chart", async () => {
  const up = await startUp(["--demo"], { ML_DEMO_RATE: "30" });
  const browser = await chromium.launch(LAUNCH);
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${up.base}/?model=threat-detector-v1`);
    await page.waitForFunction(() => document.querySelectorAll("#rows tr").length >= 3,
                               null, { timeout: 30000 });
    // a drawn chart: at least three status samples and pixels of the mean
    // (blue) and p95 (orange) lines on the canvas
    await page.waitForFunction(() => {
      const c = document.getElementById("chart");
      if (Number(c.dataset.points || 0) < 3) return false;
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let blue = 0, orange = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i] < 120 && d[i + 1] > 150 && d[i + 2] > 220) blue++;
        if (d[i] > 220 && d[i + 1] > 150 && d[i + 2] < 120) orange++;
      }
      return blue > 50 && orange > 50;
    }, null, { timeout: 30000 });
    const first = await page.$$eval("#rows tr:first-child td", (tds) => tds.map((t) => t.textContent));
    assert.match(first[1], /^demo-\d+$/, "input id");
    assert.ok(Number(first[3]) >= 0, "latency");
    assert.ok(["blue-team", "red-team", "soc", "fraud-ops"].includes(first[4]), "tenant");
    assert.equal(await page.textContent("#connText"), "live");
    const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
    assert.ok(models.includes("threat-detector-v1"));
    const dir = process.env.MLSTREAM_ARTIFACTS || path.join(ROOT, "build", "artifacts");
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, "dashboard.png"), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    const exit = await up.stop();
    assert.equal(exit.code, 0, up.output());
  }
});

// The same page against a real deployment: `mlstream gateway` fed from a
// real Redis (what engines publish there), not `up`'s in-process bus.
test("dashboard works against a gateway fed from Redis", async () => {
  const redis = await startRedis();
  const gw = await startGateway(redis.url);
  const pub = await openPublisher(redis.url);
  const model = `deploy-${process.pid}`;
  const browser = await chromium.launch(LAUNCH);
  let n = 0;
  const timer = setInterval(() => {
    n++;
    pub.publish(prediction(model, n, { received_at: new Date().toISOString(),
                                       metadata: { tenant: "soc", n }, model_version: "v7" }));
  }, 50);
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${gw.http}/?model=${model}`);
    await page.waitForFunction(() => document.querySelectorAll("#rows tr").length >= 3,
                               null, { timeout: 30000 });
    const first = await page.$$eval("#rows tr:first-child td", (tds) => tds.map((t) => t.textContent));
    assert.match(first[1], /^event-\d+$/);
    assert.equal(first[4], "soc");
    await page.waitForFunction(() => document.getElementById("redis").textContent === "connected",
                               null, { timeout: 30000 });
    const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
    assert.ok(models.includes(model), "the model picker lists what the gateway saw");
    assert.equal(first[5], "v7", "the prediction's model version");

    // the overview: every model with its versions (an engine's heartbeat
    // lists an idle one too), and the selected model's shadow comparison
    const idle = `idle-${process.pid}`;
    await pub.publish({ type: "heartbeat", engine_id: `dash-${process.pid}`, models: [model, idle],
      loaded: [{ model_id: model, framework: "torch", serving: "v7", canary: "v8", canary_share: 0.1,
                 shadow: "v9", predictions: 10, errors: 0 },
               { model_id: idle, framework: "identity", serving: null }],
      comparisons: [{ model_id: model, serving: "v7", shadow: "v9", rows: 200, agreements: 150,
                      abs_diff_sum: 2, abs_diff_le: [0.1, 1], abs_diff_counts: [100, 100, 0],
                      serving_seconds: 0.2, serving_calls: 200, shadow_seconds: 0.4, shadow_calls: 200 }] });
    await page.waitForFunction((ms) => ms.every((m) => document.querySelector(`#overview tr[data-model="${m}"]`)),
                               [model, idle], { timeout: 15000 });
    const row = await page.$$eval(`#overview tr[data-model="${model}"] td`, (tds) => tds.map((t) => t.textContent));
    assert.equal(row[1], "v7 / v8 (10 %) / v9 (shadow)");
    assert.equal(row[5], "1", "engines");
    await page.waitForFunction(() => document.querySelectorAll("#comparison tr").length === 1,
                               null, { timeout: 15000 });
    const cmp = await page.$$eval("#comparison tr td", (tds) => tds.map((t) => t.textContent));
    assert.deepEqual(cmp.slice(0, 4), ["v7", "v9", "200", "75.00 %"]);
    await page.click(`#overview tr[data-model="${idle}"]`);
    await page.waitForFunction((m) => document.getElementById("model").value === m, idle, { timeout: 5000 });
    assert.ok(await page.isHidden("#comparisonPanel"), "no comparison for the idle model");
  } finally {
    clearInterval(timer);
    pub.close();
    await browser.close();
    await gw.stop();
    await redis.stop();
  }
});

// A dropped connection: the page reconnects and resumes its subscription
// after the last prediction it showed, so the table has no hole.
test("dashboard resumes after a reconnect without losing predictions", async () => {
  const redis = await startRedis();
  const gw = await startGateway(redis.url);
  const pub = await openPublisher(redis.url);
  const model = `resume-${process.pid}`;
  const browser = await chromium.launch(LAUNCH);
  let n = 0;
  const timer = setInterval(() => {
    n++;
    pub.publish(prediction(model, n, { received_at: new Date().toISOString() }));
  }, 50);
  const shown = (page) => page.$$eval("#rows tr td:nth-child(2)",
                                      (tds) => tds.map((t) => Number(t.textContent.slice(6))));
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${gw.http}/?model=${model}`);
    await page.waitForFunction(() => document.querySelectorAll("#rows tr").length >= 5,
                               null, { timeout: 30000 });
    const before = await shown(page);
    // cut the socket as a network failure would; the page reconnects
    // after a second, while predictions keep coming
    await page.evaluate(() => ws.close());
    await page.waitForFunction(() => document.getElementById("connText").textContent === "reconnecting",
                               null, { timeout: 5000 });
    const sentWhileDown = n;
    await page.waitForFunction(() => document.getElementById("connText").textContent === "live",
                               null, { timeout: 15000 });
    await page.waitForFunction((k) => Number(document.querySelector("#rows tr td:nth-child(2)")
                                                     .textContent.slice(6)) > k,
                               sentWhileDown + 5, { timeout: 15000 });
    const after = await shown(page); // newest first
    assert.ok(after.includes(before[0]), "rows from before the cut are kept");
    const asc = [...after].reverse();
    for (let i = 1; i < asc.length; i++)
      assert.equal(asc[i], asc[i - 1] + 1, `no hole or repeat: ${asc.join(",")}`);
    assert.ok(asc[0] <= before[0] && asc[asc.length - 1] > sentWhileDown,
              "the table spans the outage");
    assert.equal(await page.textContent("#gap"), "");
  } finally {
    clearInterval(timer);
    pub.close();
    await browser.close();
    await gw.stop();
    await redis.stop();
  }
});
