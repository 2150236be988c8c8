// Signs a payload with the npm standardwebhooks package (an independent
// Standard Webhooks implementation) and prints the headers as JSON.
//   node sign.js <whsec_secret> <msg_id> <unix_seconds> <payload>
const { Webhook } = require("standardwebhooks");
const [secret, id, ts, payload] = process.argv.slice(2);
const wh = new Webhook(secret);
const date = new Date(Number(ts) * 1000);
const sig = wh.sign(id, date, payload);
process.stdout.write(JSON.stringify({ "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig }));
