// Shared helpers for the gateway's end-to-end tests: a real redis-server
// (scripts/services) unless REDIS_URL is set, a real `mlstream gateway`
// ($MLSTREAM_BIN), redis-cli PUBLISH, /metrics reads, and waiting for
// conditions with deadlines.
import { spawn, execFile } from 'node:child_process';
import { after, before } from 'node:test';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..');
export const SERVICES = path.join(ROOT, 'scripts', 'services');
export const MLSTREAM =
  process.env.MLSTREAM_BIN || path.join(ROOT, 'build', 'mlstream');
export const CHANNEL = 'ml:stream:inference';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls cond() (sync or async) until it returns a truthy value; throws
// after timeoutMs with `what` in the message.
export async function waitFor(cond, timeoutMs, what) {
  const deadline = performance.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (performance.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
                      (last instanceof Error ? `: ${last.message}` : ''));
    await sleep(25);
  }
}

function parseEnv(out) {
  const env = {};
  for (const line of out.split('\n')) {
    const m = /^export ([A-Z_]+)=['"]?(.*?)['"]?$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

// A Redis for the tests: REDIS_URL from the environment, else a private
// redis-server started with scripts/services (private: true always starts
// one, for tests that restart it).
export async function startRedis({ private: own = false } = {}) {
  if (!own && process.env.REDIS_URL)
    return { url: process.env.REDIS_URL, async stop() {} };
  const dir = mkdtempSync(path.join(tmpdir(), 'mlstream-e2e-'));
  const env = { ...process.env, MLSTREAM_SERVICES_DIR: dir };
  const { stdout } = await run(SERVICES,
                               ['start', 'redis', '--owner', String(process.pid)],
                               { env });
  const url = parseEnv(stdout).REDIS_URL;
  if (!url) throw new Error(`scripts/services printed no REDIS_URL:\n${stdout}`);
  return {
    url,
    dir,
    env,
    async stopKeep() {
      await run(SERVICES, ['stop', '--keep', 'redis'], { env });
    },
    async start() {
      await run(SERVICES, ['start', 'redis'], { env });
    },
    async stop() {
      await run(SERVICES, ['stop', 'all'], { env }).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Starts `mlstream gateway` on a free port. extraEnv adds settings.
export async function startGateway(redisUrl, extraEnv = {}) {
  const env = {
    ...process.env,
    REDIS_URL: redisUrl,
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_PORT: '0',
    ML_LOG_LEVEL: 'info',
    ...extraEnv,
  };
  const proc = spawn(MLSTREAM, ['gateway'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onData = (d) => { log += d.toString(); };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  let dead = null;
  exited.then((r) => { dead = r; });
  const port = await waitFor(() => {
    if (dead) throw new Error(`gateway exited (${JSON.stringify(dead)}):\n${log}`);
    const m = /listening on [^\s:]+:(\d+)/.exec(log);
    return m && Number(m[1]);
  }, 20000, 'the gateway to listen');
  const gw = {
    port,
    proc,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/graphql`,
    log: () => log,
    // Stops with SIGTERM and checks a clean exit (status 0; under ASan
    // also no leaks).
    async stop() {
      if (dead) return dead;
      proc.kill('SIGTERM');
      let timer;
      const r = await Promise.race([
        exited,
        new Promise((res) => { timer = setTimeout(() => res(null), 15000); }),
      ]);
      clearTimeout(timer);
      if (!r) {
        proc.kill('SIGKILL');
        throw new Error(`gateway did not stop within 15 s:\n${log}`);
      }
      if (r.code !== 0) throw new Error(`gateway exited ${JSON.stringify(r)}:\n${log}`);
      return r;
    },
  };
  return gw;
}

// PUBLISH with redis-cli; the payload goes through stdin (-x), so that it
// may be larger than one command-line argument. Returns the receivers.
// For a test file whose tests share one Redis and one ready gateway: the
// returned object's redis and gw are set before the first test and stopped
// after the last.
export function sharedGateway(extraEnv = {}) {
  const shared = { redis: null, gw: null };
  before(async () => {
    shared.redis = await startRedis();
    shared.gw = await startGateway(shared.redis.url, extraEnv);
    await waitFor(async () => (await fetch(`${shared.gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
  });
  after(async () => {
    await shared.gw?.stop();
    await shared.redis?.stop();
  });
  return shared;
}

export function publish(redisUrl, payload, channel = CHANNEL) {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const p = spawn('redis-cli', ['-u', redisUrl, '-x', 'PUBLISH', channel],
                    { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(Number(out.trim()))
                                       : reject(new Error(`redis-cli: ${code} ${err}`))));
    p.stdin.end(text);
  });
}

export async function metricsText(gw) {
  const r = await fetch(`${gw.http}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
  return r.text();
}

// The value of one series ("name" or 'name{label="v"}') in a /metrics
// text, or undefined.
export function seriesValue(text, series) {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

// The value of one series on gw's /metrics now, or undefined.
export async function metric(gw, series) {
  return seriesValue(await metricsText(gw), series);
}

export async function waitMetric(gw, series, pred, what, timeoutMs = 10000) {
  return waitFor(async () => {
    const v = await metric(gw, series);
    return pred(v) ? { v } : null;
  }, timeoutMs, what || `${series}`);
}

// POST a GraphQL request; returns {status, type, body}.
export async function gqlPost(gw, body, headers = {}) {
  const r = await fetch(`${gw.http}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json',
               accept: 'application/graphql-response+json, application/json;q=0.9',
               ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, type: r.headers.get('content-type'), text, body: json, headers: r.headers };
}

let seq = 0;
// A model id no other test uses.
export function modelId(tag = 'm') {
  return `e2e-${tag}-${process.pid}-${++seq}`;
}

// A prediction payload as the engine publishes it (DESIGN.md section 4).
export function prediction(model, n, extra = {}) {
  return {
    type: 'prediction',
    inference_id: `inf-${model}-${n}`,
    model_id: model,
    input_id: `event-${n}`,
    predictions: [[0.5 + n / 100, 0.5 - n / 100]],
    latency_ms: 1 + n / 4,
    received_at: `2026-11-26T23:59:${String(10 + (n % 50)).padStart(2, '0')}.123Z`,
    published_at: `2026-11-26T23:59:${String(10 + (n % 50)).padStart(2, '0')}.125Z`,
    metadata: { tenant: 'blue-team', n },
    kafka: { topic: 'ml.inference', partition: 3, offset: 1000 + n },
    ...extra,
  };
}

// Collects what a graphql-ws (or subscriptions-transport-ws observable)
// subscription yields.
export function collector() {
  const c = {
    events: [],
    errors: [],
    completed: false,
    sink: {
      next: (v) => c.events.push(v),
      error: (e) => c.errors.push(e),
      complete: () => { c.completed = true; },
    },
  };
  return c;
}

// A persistent Redis connection for publishing many payloads quickly
// (one redis-cli process per payload is too slow for steady streams).
// publish() resolves with the number of receivers.
export async function openPublisher(redisUrl) {
  const u = new URL(redisUrl);
  const sock = net.connect(Number(u.port || 6379), u.hostname);
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const waiting = [];
  let buf = '';
  sock.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const w = waiting.shift();
      if (!w) continue;
      if (line[0] === '-') w.reject(new Error(line));
      else w.resolve(line[0] === ':' ? Number(line.slice(1)) : line.slice(1));
    }
  });
  const command = (...args) => new Promise((resolve, reject) => {
    waiting.push({ resolve, reject });
    let out = `*${args.length}\r\n`;
    for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    sock.write(out);
  });
  if (u.password) await command('AUTH', decodeURIComponent(u.password));
  return {
    publish: (payload, channel = CHANNEL) =>
      command('PUBLISH', channel, typeof payload === 'string' ? payload : JSON.stringify(payload)),
    close: () => sock.end(),
  };
}

// An HS256 JWT (header and claims as given, so tests can forge bad ones).
export function signJwt(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const b64 = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
  const head = `${b64(header)}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

// A free TCP port on 127.0.0.1 (for servers the tests start themselves).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

// The resident set size of a process, in bytes (VmRSS of /proc/PID/status).
export function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

// Samples a process's RSS every intervalMs until stop(); stop() resolves
// with { base, peak, growth } in bytes (base: the first sample).
export function rssSampler(pid, intervalMs = 20) {
  const base = rssBytes(pid);
  let peak = base;
  const timer = setInterval(() => {
    try { peak = Math.max(peak, rssBytes(pid)); } catch { /* exited */ }
  }, intervalMs);
  return {
    base,
    stop() {
      clearInterval(timer);
      try { peak = Math.max(peak, rssBytes(pid)); } catch { /* exited */ }
      return { base, peak, growth: peak - base };
    },
  };
}

// Asks GET /healthz one request after another until stop(); each must
// answer 200 within deadlineMs. stop() resolves with { count, worstMs,
// failures: [why...] }.
export function healthzProber(gw, deadlineMs = 1000) {
  let running = true;
  let worstMs = 0;
  let count = 0;
  const failures = [];
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const r = await fetch(`${gw.http}/healthz`, { signal: AbortSignal.timeout(deadlineMs) });
        await r.text();
        if (r.status !== 200) failures.push(`status ${r.status}`);
      } catch (e) {
        failures.push(`${e.name}: ${e.message}`);
      }
      const ms = performance.now() - t0;
      worstMs = Math.max(worstMs, ms);
      count++;
      await sleep(10);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { count, worstMs, failures };
    },
  };
}

// A WebSocket client on a bare TCP socket, for tests that must control
// reading: the upgrade is done by hand, send() writes masked text frames,
// pause()/resume() stop and restart reading the socket, and frames are
// parsed as they arrive. Resolves once the upgrade is answered with
// { sock, status, send, pause, resume, frames, received, closed }, where
// frames are { opcode, data: Buffer }, received counts every byte read
// after the upgrade, and closed resolves with { code, reason } of the
// server's close frame (code -1 when the socket ended without one).
export function rawWebSocket(port, protocol, headers = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    let head = Buffer.alloc(0);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    let closeFrame = null;
    let closedResolve;
    const ws = {
      sock,
      status: 0,
      frames: [],
      received: 0,
      closed: new Promise((r) => { closedResolve = r; }),
      send(text) {
        const payload = Buffer.from(text);
        const mask = randomBytes(4);
        let hdr;
        if (payload.length < 126) {
          hdr = Buffer.from([0x81, 0x80 | payload.length]);
        } else if (payload.length < 65536) {
          hdr = Buffer.alloc(4);
          hdr[0] = 0x81; hdr[1] = 0x80 | 126; hdr.writeUInt16BE(payload.length, 2);
        } else {
          hdr = Buffer.alloc(10);
          hdr[0] = 0x81; hdr[1] = 0x80 | 127; hdr.writeBigUInt64BE(BigInt(payload.length), 2);
        }
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
        return new Promise((res) => {
          if (sock.destroyed) return res(false);
          if (sock.write(Buffer.concat([hdr, mask, payload]))) return res(true);
          sock.once('drain', () => res(true));
          sock.once('close', () => res(false));
        });
      },
      pause() { sock.pause(); },
      resume() { sock.resume(); },
    };
    const parse = () => {
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const f = { opcode: buf[0] & 0x0f, data: buf.subarray(off, off + len) };
        buf = buf.subarray(off + len);
        if (f.opcode === 8) {
          closeFrame = { code: f.data.length >= 2 ? f.data.readUInt16BE(0) : 1005,
                         reason: f.data.subarray(2).toString() };
          // answer it, as a client does, so that the server need not wait
          if (!sock.destroyed) sock.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0]));
        } else {
          ws.frames.push({ opcode: f.opcode, data: Buffer.from(f.data) });
        }
      }
    };
    sock.on('error', (e) => { if (!upgraded) reject(e); });
    sock.on('close', () => {
      closedResolve(closeFrame || { code: -1, reason: 'socket closed' });
      if (!upgraded) { upgraded = true; resolve(ws); } // refused without an answer: status 0
    });
    sock.on('data', (d) => {
      if (!upgraded) {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        upgraded = true;
        ws.status = Number(/^HTTP\/1\.1 (\d+)/.exec(head.toString())?.[1] || 0);
        d = head.subarray(end + 4);
        resolve(ws);
      }
      ws.received += d.length;
      buf = Buffer.concat([buf, d]);
      parse();
    });
    sock.once('connect', () => {
      let req = `GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
                `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
      if (protocol) req += `Sec-WebSocket-Protocol: ${protocol}\r\n`;
      for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
      sock.write(req + '\r\n');
    });
  });
}
