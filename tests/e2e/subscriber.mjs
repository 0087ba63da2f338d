// A GraphQL subscriber for tests in other languages: subscribes to one
// model's mlInferenceStream over one protocol and prints one JSON line per
// event ({"inputId","inferenceId"}), after a first line {"ready":true} once
// the subscription is live (its first event may be a probe). Stops on
// SIGTERM, printing {"end":true}.
//   node subscriber.mjs WS_URL MODEL graphql-transport-ws|graphql-ws
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

const { SubscriptionClient } = pkg;
const [url, model, protocol] = process.argv.slice(2);
const query = `subscription { mlInferenceStream(modelId: "${model}") { inputId inferenceId } }`;
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
  client.subscribe({ query }, sink);
  close = () => client.dispose();
} else {
  const client = new SubscriptionClient(url, { reconnect: false }, WebSocket);
  client.onConnected(() => out({ ready: true }));
  client.request({ query }).subscribe(sink);
  close = () => client.close();
}
process.on('SIGTERM', async () => {
  await close();
  out({ end: true });
  process.exit(0);
});
