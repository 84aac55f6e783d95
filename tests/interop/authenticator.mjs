// The browser authenticator (/_local/authenticator) end to end, with the bank's RP on
// openid-client and jose and the page driven in Debian's Chromium by playwright-core: enrolment
// with an enrolment code, a payment (RFC 9396 authorization_details) shown on the page and
// approved there, the tokens and the ID token's txn_approval recomputed by the RP, the same with
// the ciba-device simulator, and decisions whose txn_hash is wrong or missing refused. One line
// per checked step; on the first mismatch it stops with that step's message and a non-zero exit.
//
//   node tests/interop/authenticator.mjs <OP base URL, http://127.0.0.1:PORT> \
//       <path of the ciba-device binary> <screenshot path (PNG)>
//
// tests/interop.rs starts the local API (seeded from tests/seed.json, recording pushes) and runs
// this. Needs /usr/bin/chromium (tests/run installs Debian's `chromium`).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as jose from 'jose';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const [base, device, screenshot] = process.argv.slice(2);
if (!base || !device || !screenshot) {
  console.error('usage: node tests/interop/authenticator.mjs <OP base URL> <ciba-device binary> <screenshot path>');
  process.exit(2);
}
const issuerUrl = new URL(base);
// Plain http is allowed for the local API on loopback and nowhere else.
assert.ok(
  issuerUrl.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(issuerUrl.hostname),
  `the OP must be the local API on loopback over http, not ${base}`,
);
const seed = JSON.parse(await readFile(new URL('../seed.json', import.meta.url), 'utf8'));
const aliceKey = fileURLToPath(new URL('../keys/alice-phone.pem', import.meta.url));
const alicePhone = seed.devices.find((d) => d.sub === 'user-alice');
const rpName = seed.clients.find((c) => c.client_id === 'demo-rp').client_name;
const run = promisify(execFile);

const ok = (step) => console.log(`ok   ${step}`);

// Chromium, three CIBA flows and their polling intervals: a flow that hangs stops here instead.
setTimeout(() => {
  console.error('authenticator: not done after 120 s (see the last "ok" line for where it stopped)');
  process.exit(1);
}, 120_000).unref();

/** RFC 8785 (JCS), written here again rather than imported from the page, so the RP's hash is
 * an independent check of the page's and the OP's. */
const jcs = (value) => {
  if (Array.isArray(value)) return `[${value.map(jcs).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${jcs(value[k])}`).join(',')}}`;
  }
  assert.ok(typeof value !== 'number' || Number.isFinite(value), 'JCS numbers are finite');
  return JSON.stringify(value);
};
const sha256 = (text) => createHash('sha256').update(text, 'utf8').digest('base64url');

/** What the device was shown for a request, as the OP hashes it (txn_hash). */
const shownHash = (bindingMessage, details, expiresAt) => sha256(jcs({
  client_name: rpName, binding_message: bindingMessage, scope: 'openid',
  authorization_details: details, expires_at: expiresAt,
}));

/** A payment of `amount` `currency` to `creditorName` (RFC 9396 payment_initiation). */
const payment = (currency, amount, creditorName, iban, reference) => [{
  type: 'payment_initiation',
  instructedAmount: { currency, amount },
  creditorName,
  creditorAccount: { iban },
  remittanceInformationUnstructured: reference,
}];

const discover = (clientId, secret) =>
  client.discovery(issuerUrl, clientId, undefined, client.ClientSecretBasic(secret), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });

/** The pushes recorded for alice carrying `bindingMessage`, once one has reached `deviceId`
 * (at most 10 s): that push. */
async function pushTo(deviceId, bindingMessage) {
  const url = new URL('/_local/pushes', issuerUrl);
  url.searchParams.set('user', 'alice');
  url.searchParams.set('binding_message', bindingMessage);
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const response = await fetch(url);
    assert.equal(response.status, 200, `GET ${url} answered ${response.status}`);
    const pushes = (await response.json()).filter((p) => p.device_id === deviceId);
    if (pushes.length > 0) {
      assert.equal(pushes.length, 1, `one push to ${deviceId} for "${bindingMessage}", got ${pushes.length}`);
      return pushes[0];
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`no push to ${deviceId} carrying "${bindingMessage}" within 10 s`);
}

/** /bc-authorize for alice as demo-rp with scope openid and these details: the binding message
 * and the response. openid-client sends parameters as a form, so the array goes as its JSON text. */
async function startPayment(label, details) {
  const bindingMessage = `${label} ${randomBytes(3).toString('hex')}`;
  const started = await client.initiateBackchannelAuthentication(rp, {
    scope: 'openid',
    login_hint: 'alice',
    binding_message: bindingMessage,
    authorization_details: JSON.stringify(details),
  });
  assert.match(started.auth_req_id, /^[A-Za-z0-9._-]{22,}$/, 'auth_req_id');
  return { bindingMessage, started };
}

/** Checks the tokens of an approved payment: details in the token response and at introspection
 * (as demo-api), and the ID token's txn_approval; returns txn_approval. */
async function checkApproved(tokens, bindingMessage, details, deviceJkt, label) {
  assert.deepEqual(tokens.authorization_details, details, `${label}: authorization_details in the token response`);
  const claims = tokens.claims();
  assert.equal(claims.sub, 'user-alice', `${label}: ID token sub`);
  const approval = claims.txn_approval;
  assert.ok(approval && typeof approval === 'object', `${label}: the ID token has txn_approval`);
  assert.deepEqual(Object.keys(approval).sort(), ['decision_hash', 'device_jkt', 'expires_at', 'txn_hash'],
    `${label}: txn_approval's members`);
  assert.ok(Number.isInteger(approval.expires_at), `${label}: txn_approval.expires_at is an integer`);
  assert.match(approval.decision_hash, /^[A-Za-z0-9_-]{43}$/, `${label}: txn_approval.decision_hash`);
  assert.equal(approval.device_jkt, deviceJkt, `${label}: txn_approval.device_jkt is the approving device's key`);
  assert.equal(approval.txn_hash, shownHash(bindingMessage, details, approval.expires_at),
    `${label}: txn_approval.txn_hash is SHA-256 of the JCS of what the RP asked for`);
  const seen = await client.tokenIntrospection(api, tokens.access_token, { token_type_hint: 'access_token' });
  assert.equal(seen.active, true, `${label}: demo-api introspecting the access token: active`);
  assert.deepEqual(seen.authorization_details, details, `${label}: authorization_details at introspection`);
  return approval;
}

/** POST /device/decision (or /device/transaction) with a JWS of `claims` signed by alice-phone. */
async function asAlicePhone(path, key, claims) {
  const jws = await new jose.SignJWT({ ...claims, jti: randomBytes(16).toString('base64url') })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: alicePhone.device_id })
    .setIssuedAt()
    .setExpirationTime(path === '/device/transaction' ? '60s' : '120s')
    .sign(key);
  const response = await fetch(new URL(path, issuerUrl), {
    method: 'POST', headers: { 'content-type': 'application/jwt' }, body: jws,
  });
  return { status: response.status, body: response.status === 204 ? null : await response.json() };
}

// 1. Discovery.
const rp = await discover('demo-rp', 'demo-rp-secret');
const api = await discover('demo-api', 'demo-api-secret');
const metadata = rp.serverMetadata();
assert.equal(new URL(metadata.issuer).href, issuerUrl.href, 'the discovered issuer is the OP asked');
assert.ok(metadata.grant_types_supported.includes('urn:openid:params:grant-type:ciba'), 'discovery: the CIBA grant');
assert.ok(metadata.authorization_details_types_supported?.includes('payment_initiation'),
  'discovery: authorization_details_types_supported has payment_initiation');
ok(`discovery of ${metadata.issuer} as demo-rp and demo-api: CIBA, authorization_details_types_supported ${JSON.stringify(metadata.authorization_details_types_supported)}`);

// 2. An enrolment code for alice, as an operator issues it.
const issued = await fetch(new URL('/_local/enrollment-codes', issuerUrl), {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice', ttl: 600 }),
});
assert.equal(issued.status, 201, 'POST /_local/enrollment-codes answers 201');
const code = await issued.json();
assert.equal(typeof code.enrollment_code, 'string', 'an enrollment_code');
assert.equal(code.sub, 'user-alice', 'the code is alice\'s');
assert.ok(code.expires_at > Date.now() / 1000, 'the code expires in the future');
ok(`POST /_local/enrollment-codes for alice: 201, a code for ${code.sub} expiring at ${code.expires_at}`);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  // 3. The page enrols the browser.
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  const elsewhere = [];
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('request', (request) => {
    if (new URL(request.url()).origin !== issuerUrl.origin) elsewhere.push(request.url());
  });
  const noProblems = (step, tolerated = /^$/) => {
    assert.deepEqual(problems.filter((p) => !tolerated.test(p)), [], `${step}: the page logged errors`);
    assert.deepEqual(elsewhere, [], `${step}: the page requested another origin`);
  };
  /** What the page shows in its error box and logged: for a failure's message. */
  const pageSays = async () =>
    `the page's error box: "${await page.getByTestId('error').textContent()}"; logged: ${JSON.stringify(problems)}`;

  const loaded = await page.goto(new URL('/_local/authenticator', issuerUrl).href);
  assert.equal(loaded.status(), 200, 'GET /_local/authenticator');
  assert.match(loaded.headers()['content-security-policy'] ?? '', /script-src 'self'/, 'the page has its CSP');
  await page.getByTestId('enrollment-code').fill(code.enrollment_code);
  await page.getByTestId('enrol').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="device-id"]')?.textContent);
  const deviceId = await page.getByTestId('device-id').textContent();
  const browserJkt = await page.getByTestId('device-jkt').textContent();
  assert.match(deviceId, /^[A-Za-z0-9_-]{22}$/, 'the device id is 128 bits of base64url');
  assert.match(browserJkt, /^[A-Za-z0-9_-]{43}$/, 'the thumbprint is a base64url SHA-256');
  assert.equal(await page.getByTestId('error').isVisible(), false, 'no error shown');
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="device-id"]')?.textContent);
  assert.equal(await page.getByTestId('device-id').textContent(), deviceId, 'the device survives a reload (IndexedDB)');
  assert.equal(await page.getByTestId('device-jkt').textContent(), browserJkt, 'the key survives a reload');
  noProblems('enrolment');
  ok(`Chromium ${browser.version()} enrolled on ${issuerUrl.origin}/_local/authenticator: device ${deviceId}, key thumbprint ${browserJkt}, kept across a reload`);

  // 4. The RP asks alice to approve a payment.
  const rent = payment('GBP', '50.00', 'Savings Ltd', 'GB29NWBK60161331926819', 'Rent');
  const first = await startPayment('Order A', rent);
  // Polling starts now, as an RP does; the first poll goes out after `interval`.
  const firstTokens = client.pollBackchannelAuthenticationGrant(rp, first.started);
  ok(`/bc-authorize with a payment_initiation for alice: auth_req_id, expires_in ${first.started.expires_in}, binding message "${first.bindingMessage}"`);

  // 5. The page shows it; alice approves.
  const push = await pushTo(deviceId, first.bindingMessage);
  const card = page.getByTestId('request').filter({ hasText: first.bindingMessage });
  await card.waitFor().catch(async (error) =>
    assert.fail(`no card for "${first.bindingMessage}" on the page: ${await pageSays()} (${error.message})`));
  assert.equal(await card.getAttribute('data-txn'), push.message.txn, 'the card is the pushed txn');
  const text = await card.innerText();
  for (const shown of ['50.00', 'GBP', 'Savings Ltd', 'Rent', rpName]) {
    assert.ok(text.includes(shown), `the card shows "${shown}": ${text}`);
  }
  await mkdir(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  await card.getByTestId('approve').click();
  const outcome = card.locator('[data-testid="outcome"][data-outcome="approved"]');
  await outcome.waitFor().catch(async (error) => assert.fail(
    `no "approved" outcome; the card's: "${await card.getByTestId('outcome').textContent()}", ${await pageSays()} (${error.message})`));
  assert.match(await outcome.textContent(), /approved/i, 'the outcome says approved');
  noProblems('approval');
  ok(`the page showed txn ${push.message.txn} ("Pay 50.00 GBP to Savings Ltd"), screenshot ${screenshot}; approved`);

  // 6. The RP's tokens carry the payment and the proof of what the browser showed.
  const rentApproval = await checkApproved(await firstTokens, first.bindingMessage, rent, browserJkt, 'browser');
  assert.equal(rentApproval.expires_at, push.message.expires_at, 'txn_approval.expires_at is the request\'s expiry');
  ok(`tokens: authorization_details as sent (token response and introspection); txn_approval.txn_hash ${rentApproval.txn_hash} recomputed by the RP, device_jkt the browser's key`);

  // 7. The same with the device simulator on alice's seeded phone.
  const phoneKey = await jose.importPKCS8(await readFile(aliceKey, 'utf8'), 'ES256', { extractable: true });
  const { kty, crv, x, y } = await jose.exportJWK(phoneKey);
  const phoneJkt = await jose.calculateJwkThumbprint({ kty, crv, x, y });
  assert.equal(phoneJkt, await jose.calculateJwkThumbprint(alicePhone.public_key), 'the key file is the seeded key');
  assert.notEqual(phoneJkt, browserJkt, 'the phone and the browser have different keys');
  const invoice = payment('EUR', '12.34', 'Muster GmbH', 'DE89370400440532013000', 'Invoice 42');
  const second = await startPayment('Order B', invoice);
  const secondTokens = client.pollBackchannelAuthenticationGrant(rp, second.started);
  const phonePush = await pushTo(alicePhone.device_id, second.bindingMessage);
  const { stdout } = await run(device, [
    'approve', '--user', 'alice', '--device-id', alicePhone.device_id, '--key', aliceKey,
    '--txn', phonePush.message.txn, '--api', base,
  ]);
  assert.match(stdout, /approved/, `ciba-device approve printed: ${stdout}`);
  const invoiceApproval = await checkApproved(await secondTokens, second.bindingMessage, invoice, phoneJkt, 'ciba-device');
  assert.notEqual(invoiceApproval.txn_hash, rentApproval.txn_hash, 'another payment, another txn_hash');
  ok(`ciba-device approved 12.34 EUR on ${alicePhone.device_id}: tokens with that authorization_details, txn_approval.device_jkt ${phoneJkt}`);

  // 8. Decisions that do not prove what was shown are refused.
  const bills = payment('GBP', '7.50', 'Power Co', 'GB29NWBK60161331926819', 'Bill');
  const third = await startPayment('Order C', bills);
  const { txn } = (await pushTo(alicePhone.device_id, third.bindingMessage)).message;
  const fetched = await asAlicePhone('/device/transaction', phoneKey, { txn });
  assert.equal(fetched.status, 200, `/device/transaction as alice-phone: ${JSON.stringify(fetched.body)}`);
  const rightHash = sha256(jcs(fetched.body.shown));
  assert.equal(rightHash, shownHash(third.bindingMessage, bills, fetched.body.shown.expires_at),
    'what /device/transaction shows is what the RP asked for');
  const wrongHash = shownHash(third.bindingMessage, payment('GBP', '750.00', 'Power Co', 'GB29NWBK60161331926819', 'Bill'),
    fetched.body.shown.expires_at);
  const tampered = await asAlicePhone('/device/decision', phoneKey, { txn, action: 'approve', txn_hash: wrongHash });
  assert.equal(tampered.status, 400, `a wrong txn_hash: ${JSON.stringify(tampered.body)}`);
  assert.equal(tampered.body.error, 'invalid_request', 'a wrong txn_hash: invalid_request');
  const missing = await asAlicePhone('/device/decision', phoneKey, { txn, action: 'approve' });
  assert.equal(missing.status, 400, `no txn_hash: ${JSON.stringify(missing.body)}`);
  assert.equal(missing.body.error, 'invalid_request', 'no txn_hash: invalid_request');
  // The control: the same key and txn with the right hash is accepted (a denial here).
  const denied = await asAlicePhone('/device/decision', phoneKey, { txn, action: 'deny', txn_hash: rightHash });
  assert.equal(denied.status, 204, `the right txn_hash: ${JSON.stringify(denied.body)}`);
  await assert.rejects(client.pollBackchannelAuthenticationGrant(rp, third.started), (error) => {
    assert.equal(error.error, 'access_denied', `the RP's poll after the denial: ${error}`);
    return true;
  });
  ok(`a decision with a wrong txn_hash ("${tampered.body.error_description}") and one without ("${missing.body.error_description}"): 400 invalid_request; the right hash: 204, access_denied at /token`);

  // The page got the pushes of steps 7 and 8 too: when ciba-device or this script decided first,
  // its /device/transaction was answered 409 (the card is dropped), which Chromium logs.
  assert.equal(await page.getByTestId('error').isVisible(), false, `the page shows no error: ${await pageSays()}`);
  noProblems('the whole run', /^console: Failed to load resource: the server responded with a status of 409\b/);
  ok('the page raised no error, logged none but 409s of requests decided elsewhere, and requested nothing from another origin');
} finally {
  await browser.close();
}

console.log('authenticator: every step passed');
