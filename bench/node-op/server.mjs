// node-oidc-provider with CIBA in poll mode: the side-by-side OP of bench/report.sh.
//
//   PORT=8090 node server.mjs [--device-key ../../tests/keys/alice-phone.pem]
//
// One client (bench-rp, client_secret_basic, poll), one user (alice → user-alice) and, as the
// stand-in for the authentication device, POST /_approve with an ES256 JWT of alice's phone
// (claims txn = auth_req_id, action, iat, exp, jti): the same signature check our
// /device/decision does, then provider.backchannelResult. In-memory adapter, ES256 ID tokens.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const here = dirname(fileURLToPath(import.meta.url));
const port = Number(process.env.PORT || 8090);
const issuer = `http://127.0.0.1:${port}`;
const args = process.argv.slice(2);
const devicePem = args[0] === '--device-key' ? args[1] : resolve(here, '../../tests/keys/alice-phone.pem');
const deviceKey = createPublicKey(createPrivateKey(readFileSync(devicePem, 'utf8')));

const users = new Map([['alice', 'user-alice'], ['alice@example.com', 'user-alice']]);
const usedJtis = new Map();

const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
signing.kid = 'bench';
signing.alg = 'ES256';
signing.use = 'sig';

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bench-rp',
    client_secret: 'bench-rp-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['urn:openid:params:grant-type:ciba', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    backchannel_token_delivery_mode: 'poll',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [signing] },
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, name: 'Alice Adams', email: 'alice@example.com' }),
  }),
  features: {
    devInteractions: { enabled: false },
    ciba: {
      enabled: true,
      deliveryModes: ['poll'],
      processLoginHint: async (ctx, loginHint) => users.get(loginHint),
      processLoginHintToken: async () => undefined,
      verifyUserCode: async () => {},
      validateBindingMessage: async (ctx, message) => {
        if (message !== undefined && (message.length === 0 || message.length > 100)) {
          throw new errors.InvalidBindingMessage('binding_message must be 1 to 100 characters');
        }
      },
      validateRequestContext: async () => {},
      // The device is told through POST /_approve, like our push + /device/decision.
      triggerAuthenticationDevice: async () => {},
    },
  },
  ttl: { BackchannelAuthenticationRequest: 600 },
});

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// The authentication device's decision: a JWT signed with alice's phone key.
provider.use(async (ctx, next) => {
  if (ctx.path !== '/_approve' || ctx.method !== 'POST') return next();
  try {
    const jwt = await readBody(ctx.req);
    const { payload } = await jose.jwtVerify(jwt, deviceKey, { algorithms: ['ES256'], requiredClaims: ['txn', 'jti', 'exp', 'iat'] });
    if (usedJtis.has(payload.jti)) throw new Error('jti replayed');
    usedJtis.set(payload.jti, payload.exp);
    const request = await provider.BackchannelAuthenticationRequest.find(payload.txn);
    if (!request || request.grantId || request.error) throw new Error('unknown or decided request');
    if (payload.action === 'approve') {
      const grant = new provider.Grant({ clientId: request.clientId, accountId: request.accountId });
      grant.addOIDCScope(request.scope);
      await grant.save();
      await provider.backchannelResult(request, grant, { authTime: Math.floor(Date.now() / 1000) });
    } else {
      await provider.backchannelResult(request, new errors.AccessDenied('the user denied the request'));
    }
    ctx.status = 204;
  } catch (e) {
    ctx.status = 400;
    ctx.body = { error: 'invalid_request', error_description: String(e.message || e) };
  }
});

// Forget spent jtis once they have expired.
setInterval(() => {
  const now = Math.floor(Date.now() / 1000);
  for (const [jti, exp] of usedJtis) if (exp < now) usedJtis.delete(jti);
}, 10_000).unref();

provider.listen(port, '127.0.0.1', () => {
  console.log(`node-oidc-provider CIBA OP listening on ${issuer}`);
});
