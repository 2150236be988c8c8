// Verifies a captured delivery with the npm standardwebhooks package, an
// independent Standard Webhooks implementation. Usage:
//
//   NODE_PATH=<node_modules> node verify.js capture.json
//
// capture.json: {"secret": "whsec_...", "raw": false, "body": "...",
// "headers": {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": ...}}
// With "raw": true the secret's bytes are the key (format "raw").
// Exits 0 when the signature verifies, 1 (with the reason) when not.
"use strict";
const fs = require("fs");
const { Webhook } = require("standardwebhooks");

const c = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
try {
  const wh = c.raw ? new Webhook(c.secret, { format: "raw" }) : new Webhook(c.secret);
  wh.verify(c.body, c.headers);
  console.log("verified");
} catch (e) {
  console.error("verification failed: " + e.message);
  process.exit(1);
}
