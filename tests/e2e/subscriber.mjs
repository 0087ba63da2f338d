// A GraphQL subscriber for tests in other languages: subscribes to the
// mlInferenceStream of one model, or of several (comma-separated, each a
// subscription of one client), over one protocol and prints one JSON line
// per event ({"modelId","inputId","inferenceId"}), after a first line
// {"ready":true} once the connection is acknowledged (a subscription's
// first event may be a probe). Stops on SIGTERM, printing {"end":true}.
//   node subscriber.mjs WS_URL MODEL[,MODEL...] graphql-transport-ws|graphql-ws
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

const { SubscriptionClient } = pkg;
const [url, modelList, protocol] = process.argv.slice(2);
const models = modelList.split(',');
const query = (m) => `subscription { mlInferenceStream(modelId: ${JSON.stringify(m)}) ` +
  '{ modelId inputId inferenceId } }';
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sink = {
  next: (r) => out(r.data ? r.data.mlInferenceStream : { error: r.errors }),
  error: (e) => { out({ error: String(e?.message ?? e) }); process.exit(1); },
  complete: () => {},
};

let close;
if (protocol === 'graphql-transport-ws') {
  const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false,
    on: { connected: () => out({ ready: true }) } });
  for (const m of models) client.subscribe({ query: query(m) }, sink);
  close = () => client.dispose();
} else {
  const client = new SubscriptionClient(url, { reconnect: false }, WebSocket);
  client.onConnected(() => out({ ready: true }));
  for (const m of models) client.request({ query: query(m) }).subscribe(sink);
  close = () => client.close();
}
process.on('SIGTERM', async () => {
  await close();
  out({ end: true });
  process.exit(0);
});
