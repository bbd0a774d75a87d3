// Send one message the way Ghost does, from the `mail` block of a config.production.json.
// Usage: node ghost_send.js CONFIG_FILE TO SUBJECT
// Ghost's mailer hands mail.options to Nodemailer's SMTP transport when mail.transport is "SMTP"
// and sends from mail.from. Certificate trust comes from NODE_EXTRA_CA_CERTS, as for Ghost.
// Prints one JSON object: ok, error, response (the server's reply to DATA).
"use strict";
const fs = require("fs");
const nodemailer = require("nodemailer");

async function main() {
  const [configFile, to, subject] = process.argv.slice(2);
  const { mail } = JSON.parse(fs.readFileSync(configFile, "utf8"));
  if (mail.transport !== "SMTP") throw new Error(`mail.transport is ${mail.transport}, not SMTP`);
  const transport = nodemailer.createTransport(mail.options);
  const info = await transport.sendMail({ from: mail.from, to, subject, text: "Sent by Ghost's mail settings.\n" });
  return { ok: true, error: null, response: info.response };
}

main().then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.log(JSON.stringify({ ok: false, error: String(error), response: null }));
    process.exitCode = 1;
  },
);
