// Consume COUNT records from partition 0 of a topic through the gateway with a bearer token (OAUTHBEARER).
// Reads {"brokers", "topic", "token", "count"} as JSON on stdin (secrets stay off the command line).
// Prints one JSON line: {"values": [string|null, ...]}.
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const { brokers, topic, token, count } = JSON.parse(input);
  const kafka = new Kafka({
    clientId: "kafkajs-masking-test", brokers, logLevel: logLevel.NOTHING,
    sasl: { mechanism: "oauthbearer", oauthBearerProvider: async () => ({ value: token }) },
  });
  const consumer = kafka.consumer({ groupId: `kjs-${Date.now()}-${Math.random()}`, sessionTimeout: 6000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout after ${values.length}/${count}`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value === null ? null : message.value.toString());
        if (values.length >= count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ values }));
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
