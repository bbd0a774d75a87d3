// Send one message through the appliance with Nodemailer (as Ghost does).
// Usage: node nodemailer_send.js '<json>' with host, port, secure (true: implicit TLS), servername,
// ca (a PEM file; omit to use Node's default trust store), username, password, from, to, subject,
// auth_method (optional: "PLAIN" or "LOGIN").
// Prints one JSON object: ok, error, response (the server's reply to DATA), messageId, transcript
// (Nodemailer's debug log of the SMTP conversation, credentials masked by Nodemailer).
"use strict";
const fs = require("fs");
const util = require("util");
const nodemailer = require("nodemailer");

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  // Certificate verification stays at Nodemailer's default (rejectUnauthorized: true): we only say
  // which CA to trust and which name to check, since the socket goes to 127.0.0.1.
  const tls = { servername: cfg.servername };
  if (cfg.ca) tls.ca = [fs.readFileSync(cfg.ca)];
  const auth = { user: cfg.username, pass: cfg.password };
  const transcript = [];
  const record = (_entry, message, ...args) => transcript.push(util.format(message, ...args));
  const logger = { trace: record, debug: record, info: record, warn: record, error: record, fatal: record };
  const transport = nodemailer.createTransport({
    host: cfg.host,
    port: cfg.port,
    secure: cfg.secure,
    requireTLS: !cfg.secure,
    authMethod: cfg.auth_method || undefined,
    auth,
    tls,
    connectionTimeout: 30000,
    greetingTimeout: 30000,
    socketTimeout: 30000,
    logger,
    debug: true,
  });
  try {
    const info = await transport.sendMail({
      from: cfg.from,
      to: cfg.to,
      subject: cfg.subject,
      text: "Sent by Nodemailer in the appliance's tests.\n",
    });
    console.log(JSON.stringify({ ok: true, response: info.response, messageId: info.messageId, transcript }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err), code: err.code || null, transcript }));
    process.exitCode = 1;
  }
}

main();
