// The bank's RP, written the way an RP uses openid-client and jose, against the local API:
// discovery, CIBA for alice (approved on her phone by the device simulator), the ID token checked
// by openid-client, introspection as the resource server, revocation, refresh-token reuse, and
// RFC 9068 JWT access tokens verified against /jwks. One line per checked step; on the first
// mismatch it stops with that step's message and a non-zero exit.
//
//   node tests/interop/rp.mjs <OP base URL, http://127.0.0.1:PORT> <path of the ciba-device binary>
//
// tests/interop.rs starts the local API (in-memory store, tests/seed.json) and runs this.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as jose from 'jose';
import * as client from 'openid-client';

const [base, device] = process.argv.slice(2);
if (!base || !device) {
  console.error('usage: node tests/interop/rp.mjs <OP base URL> <ciba-device binary>');
  process.exit(2);
}
const issuerUrl = new URL(base);
// Plain http is allowed for the local API on loopback and nowhere else.
assert.ok(
  issuerUrl.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(issuerUrl.hostname),
  `the OP must be the local API on loopback over http, not ${base}`,
);
const aliceKey = fileURLToPath(new URL('../keys/alice-phone.pem', import.meta.url));
const run = promisify(execFile);

const ok = (step) => console.log(`ok   ${step}`);

// openid-client polls until the request expires (10 minutes): a flow that hangs stops here instead.
setTimeout(() => {
  console.error('interop: not done after 90 s (see the last "ok" line for where it stopped)');
  process.exit(1);
}, 90_000).unref();

/** openid-client's configuration for a seeded client authenticating with client_secret_basic;
 * ID tokens in token responses are also checked against /jwks (non-repudiation checks). */
const discover = (clientId, secret) =>
  client.discovery(issuerUrl, clientId, undefined, client.ClientSecretBasic(secret), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });

/** The local API's record of the pushes sent to alice's devices carrying `bindingMessage`. */
async function pushesFor(bindingMessage) {
  const url = new URL('/_local/pushes', issuerUrl);
  url.searchParams.set('user', 'alice');
  url.searchParams.set('binding_message', bindingMessage);
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url} answered ${response.status}`);
  return response.json();
}

/** Waits (at most 10 s) for the one push carrying `bindingMessage`: its txn. */
async function pushedTxn(bindingMessage) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const pushes = await pushesFor(bindingMessage);
    if (pushes.length > 0) {
      assert.equal(pushes.length, 1, `one push for "${bindingMessage}", got ${pushes.length}`);
      assert.equal(pushes[0].device_id, 'alice-phone');
      return pushes[0].message.txn;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`no push to alice carrying "${bindingMessage}" within 10 s`);
}

/** CIBA for alice as `config`'s client, approved on alice-phone with the device simulator: the
 * token endpoint response, its ID token validated by openid-client. */
async function cibaLogin(config, scope, label, options = {}) {
  const bindingMessage = `Interop ${label} ${randomBytes(4).toString('hex')}`;
  const started = await client.initiateBackchannelAuthentication(config, {
    scope,
    login_hint: 'alice',
    binding_message: bindingMessage,
  });
  assert.match(started.auth_req_id, /^[A-Za-z0-9._-]{22,}$/, 'auth_req_id');
  ok(`${label}: /bc-authorize for login_hint=alice answered auth_req_id, expires_in ${started.expires_in}, interval ${started.interval}`);

  // Polling starts now, as an RP does; the first poll goes out after `interval`.
  const polled = client.pollBackchannelAuthenticationGrant(config, started, undefined, options);
  const txn = await pushedTxn(bindingMessage);
  const { stdout } = await run(device, [
    'approve', '--user', 'alice', '--device-id', 'alice-phone', '--key', aliceKey,
    '--txn', txn, '--api', base,
  ]);
  assert.match(stdout, /approved/, `ciba-device approve printed: ${stdout}`);
  ok(`${label}: the push reached alice-phone and ciba-device approved txn ${txn}`);

  const tokens = await polled;
  assert.equal(tokens.token_type.toLowerCase(), options.DPoP ? 'dpop' : 'bearer');
  assert.ok(tokens.access_token && tokens.refresh_token && tokens.id_token, 'access, refresh and ID tokens');
  const claims = tokens.claims();
  assert.equal(claims.iss, config.serverMetadata().issuer, 'ID token iss');
  assert.equal(claims.aud, config.clientMetadata().client_id, 'ID token aud');
  assert.equal(claims.sub, 'user-alice', 'ID token sub');
  assert.equal(claims['urn:openid:params:jwt:claim:auth_req_id'], started.auth_req_id, 'ID token auth_req_id claim');
  ok(`${label}: polled tokens; openid-client validated the ID token (signature against /jwks, iss, aud, exp) for sub ${claims.sub}`);
  return tokens;
}

async function inactive(config, token, hint, what) {
  const answer = await client.tokenIntrospection(config, token, { token_type_hint: hint });
  assert.deepEqual({ ...answer }, { active: false }, `${what}: introspection must answer exactly {"active": false}`);
}

const rp = await discover('demo-rp', 'demo-rp-secret');
const api = await discover('demo-api', 'demo-api-secret');
const wallet = await discover('demo-jwt', 'demo-jwt-secret');
const metadata = rp.serverMetadata();
const { issuer } = metadata;
assert.equal(new URL(issuer).href, issuerUrl.href, 'the discovered issuer is the OP asked');
for (const field of ['backchannel_authentication_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'jwks_uri', 'userinfo_endpoint']) {
  assert.ok(metadata[field], `discovery names ${field}`);
}
assert.ok(metadata.grant_types_supported.includes('urn:openid:params:grant-type:ciba'), 'discovery: the CIBA grant');
assert.ok(metadata.introspection_endpoint_auth_methods_supported.includes('client_secret_basic'), 'discovery: basic auth at /introspect');
assert.ok(metadata.revocation_endpoint_auth_methods_supported.includes('client_secret_basic'), 'discovery: basic auth at /revoke');
ok(`discovery of ${issuer} as demo-rp, demo-api and demo-jwt: CIBA, introspection and revocation endpoints`);

// The walk-through: tokens, introspection by the resource server, revocation of the family.
const first = await cibaLogin(rp, 'openid email profile', 'demo-rp');
const seen = await client.tokenIntrospection(api, first.access_token, { token_type_hint: 'access_token' });
assert.equal(seen.active, true, 'demo-api introspecting demo-rp\'s access token: active');
assert.equal(seen.sub, 'user-alice', 'introspection sub');
assert.equal(seen.client_id, 'demo-rp', 'introspection client_id');
assert.deepEqual(seen.scope.split(' ').sort(), ['email', 'openid', 'profile'], 'introspection scope');
assert.equal(seen.token_type, 'Bearer', 'introspection token_type');
assert.ok(seen.exp > seen.iat, 'introspection exp after iat');
ok(`demo-api (resource server) introspected demo-rp's access token: active, sub ${seen.sub}, scope "${seen.scope}"`);

const own = await client.tokenIntrospection(rp, first.refresh_token, { token_type_hint: 'refresh_token' });
assert.equal(own.active, true, 'demo-rp introspecting its refresh token: active');
assert.equal(own.client_id, 'demo-rp');
assert.equal(own.sub, 'user-alice');
ok('demo-rp introspected its own refresh token: active');

await client.tokenRevocation(rp, first.refresh_token, { token_type_hint: 'refresh_token' });
await inactive(api, first.access_token, 'access_token', 'the access token after its refresh token was revoked (as demo-api)');
await inactive(rp, first.access_token, 'access_token', 'the access token after its refresh token was revoked (as demo-rp)');
await inactive(rp, first.refresh_token, 'refresh_token', 'the revoked refresh token');
ok('demo-rp revoked the refresh token: it and the access token issued with it are {"active": false}');

// Refresh-token reuse (RFC 9700 §4.14): a rotated refresh token presented again revokes the family.
const second = await cibaLogin(rp, 'openid email', 'refresh reuse');
const rotated = await client.refreshTokenGrant(rp, second.refresh_token);
assert.ok(rotated.access_token && rotated.refresh_token, 'the refresh grant answers new tokens');
assert.notEqual(rotated.refresh_token, second.refresh_token, 'the refresh token rotates');
assert.equal(rotated.claims()?.sub, 'user-alice', 'the refreshed ID token is alice\'s');
assert.equal((await client.tokenIntrospection(rp, rotated.refresh_token)).active, true, 'the rotated refresh token is active');
ok('refresh grant once: new access and refresh tokens, the new refresh token active');

await assert.rejects(
  client.refreshTokenGrant(rp, second.refresh_token),
  (error) => {
    assert.ok(error instanceof client.ResponseBodyError, `a ResponseBodyError, got ${error}`);
    assert.equal(error.error, 'invalid_grant');
    assert.equal(error.status, 400);
    return true;
  },
  'presenting the spent refresh token again must fail with invalid_grant',
);
ok('the spent refresh token presented again: openid-client throws ResponseBodyError invalid_grant');
await inactive(rp, rotated.refresh_token, 'refresh_token', 'the rotated refresh token after reuse of its predecessor');
await inactive(api, rotated.access_token, 'access_token', 'the access token of the rotated refresh token after reuse');
ok('after the reuse the whole family is revoked: the new refresh and access tokens are {"active": false}');

// RFC 9068 JWT access tokens, checked locally the way an API does, then used at /userinfo.
const jwtTokens = await cibaLogin(wallet, 'openid email profile', 'demo-jwt');
const jwks = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
const { payload, protectedHeader } = await jose.jwtVerify(jwtTokens.access_token, jwks, {
  issuer,
  audience: issuer,
  typ: 'at+jwt',
  algorithms: ['ES256'],
  requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id'],
});
assert.equal(protectedHeader.typ, 'at+jwt');
assert.equal(payload.sub, 'user-alice', 'JWT access token sub');
assert.equal(payload.client_id, 'demo-jwt', 'JWT access token client_id');
assert.deepEqual(payload.scope.split(' ').sort(), ['email', 'openid', 'profile'], 'JWT access token scope');
ok(`jose verified demo-jwt's access token against ${metadata.jwks_uri}: typ at+jwt, kid ${protectedHeader.kid}, iss and aud the issuer`);

const userinfo = await client.fetchUserInfo(wallet, jwtTokens.access_token, jwtTokens.claims().sub);
assert.equal(userinfo.sub, 'user-alice', 'userinfo sub');
assert.equal(userinfo.email, 'alice@example.com', 'userinfo email (scope email)');
ok(`openid-client fetched /userinfo with the JWT access token: sub ${userinfo.sub}, email ${userinfo.email}`);

const jwtSeen = await client.tokenIntrospection(api, jwtTokens.access_token);
assert.equal(jwtSeen.active, true, 'demo-api introspecting the JWT access token: active');
assert.equal(jwtSeen.client_id, 'demo-jwt');
await client.tokenRevocation(wallet, jwtTokens.access_token, { token_type_hint: 'access_token' });
await inactive(api, jwtTokens.access_token, 'access_token', 'the revoked JWT access token');
ok('the JWT access token: active at introspection, then revoked by demo-jwt and {"active": false}');

// DPoP (RFC 9449): openid-client signs a proof for every request with its own key pair, and
// retries with the OP's nonce when answered use_dpop_nonce (the OP runs with DPOP_NONCE=required).
const dpopKeys = await client.randomDPoPKeyPair('ES256');
const dpop = client.getDPoPHandle(rp, dpopKeys);
const bound = await cibaLogin(rp, 'openid email', 'DPoP', { DPoP: dpop });
const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKeys.publicKey));
const boundSeen = await client.tokenIntrospection(api, bound.access_token);
assert.equal(boundSeen.active, true, 'the DPoP-bound access token is active');
assert.equal(boundSeen.token_type, 'DPoP');
assert.deepEqual(boundSeen.cnf, { jkt }, 'introspection names the key the token is bound to');
const boundInfo = await client.fetchUserInfo(rp, bound.access_token, 'user-alice', { DPoP: dpop });
assert.equal(boundInfo.sub, 'user-alice');
await assert.rejects(
  client.fetchUserInfo(rp, bound.access_token, 'user-alice'),
  (e) => e.status === 401,
  'the DPoP-bound token as a plain Bearer token is refused',
);
const boundRefreshed = await client.refreshTokenGrant(rp, bound.refresh_token, undefined, { DPoP: dpop });
assert.equal(boundRefreshed.token_type.toLowerCase(), 'dpop');
ok(`DPoP: tokens bound to jkt ${jkt}, /userinfo with proofs, refused as Bearer, refreshed with a proof`);

console.log('interop: every step passed');
