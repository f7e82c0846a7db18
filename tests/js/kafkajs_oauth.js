// kafkajs through the gateway in identity mode: SASL OAUTHBEARER with an oauthBearerProvider that fetches
// access tokens from the OIDC provider's token endpoint (client_credentials), as an application would.
//
// Usage: node kafkajs_oauth.js < config.json
// The configuration comes on stdin, never argv, because it carries client secrets:
//   {"bootstrap": "127.0.0.1:PORT", "tokenEndpoint": "http://.../token",
//    "clients": {"writer": {"id": "...", "secret": "..."}, "reader": {...}},
//    "allowedTopic": "...", "groupId": "...", "count": N, "sessionTimeout": MS (optional),
//    "deniedProduce": [{"client": "writer", "topic": "..."}, ...]}
// Prints one JSON line: {"produced": N, "consumed": [...], "denied": [{"client", "topic", "error", "type"}],
//                        "tokenFetches": {"writer": n, ...}}
// Secrets and tokens are never printed.
const { Kafka, logLevel } = require("kafkajs");

async function fetchToken(endpoint, id, secret) {
  const basic = Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64");
  const res = await fetch(endpoint, {
    method: "POST",
    headers: { Authorization: `Basic ${basic}`, "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials" }).toString(),
  });
  if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status} for client ${id}`);
  return (await res.json()).access_token;
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

async function main() {
  const cfg = JSON.parse(await readStdin());
  const tokenFetches = {};
  const kafkaFor = (name) => {
    const client = cfg.clients[name];
    tokenFetches[name] = 0;
    return new Kafka({
      clientId: `kafkajs-${name}`,
      brokers: [cfg.bootstrap],
      logLevel: logLevel.NOTHING,
      retry: { retries: 2, initialRetryTime: 100 },
      sasl: {
        mechanism: "oauthbearer",
        oauthBearerProvider: async () => {
          tokenFetches[name] += 1;
          return { value: await fetchToken(cfg.tokenEndpoint, client.id, client.secret) };
        },
      },
    });
  };
  const writer = kafkaFor("writer");
  const reader = kafkaFor("reader");

  const producer = writer.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < cfg.count; i++) messages.push({ key: `k${i}`, value: `kafkajs-oauth-${i}` });
  await producer.send({ topic: cfg.allowedTopic, messages });
  await producer.disconnect();

  const denied = [];
  for (const attempt of cfg.deniedProduce) {
    const p = (attempt.client === "writer" ? writer : reader).producer();
    await p.connect();
    try {
      await p.send({ topic: attempt.topic, messages: [{ value: "must-not-arrive" }] });
      denied.push({ client: attempt.client, topic: attempt.topic, error: null, type: null });
    } catch (err) {
      // kafkajs may wrap the broker error (retries exhausted); report the innermost protocol error type.
      let inner = err;
      while (inner && !inner.type && inner.cause) inner = inner.cause;
      denied.push({ client: attempt.client, topic: attempt.topic, error: String(err.message),
                    type: inner && inner.type ? inner.type : null });
    } finally {
      await p.disconnect();
    }
  }

  // A short session keeps the broker's join wait short (Tansu holds a JoinGroup for about half of it).
  const sessionTimeout = cfg.sessionTimeout || 30000;
  const consumer = reader.consumer({ groupId: cfg.groupId, sessionTimeout,
                                     heartbeatInterval: Math.min(3000, Math.floor(sessionTimeout / 3)) });
  await consumer.connect();
  await consumer.subscribe({ topic: cfg.allowedTopic, fromBeginning: true });
  const consumed = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout: consumed ${consumed.length}/${cfg.count}`)), 40000);
    consumer.run({
      eachMessage: async ({ message }) => {
        consumed.push(message.value.toString());
        if (consumed.length >= cfg.count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ produced: cfg.count, consumed, denied, tokenFetches }));
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
