// The OpenID provider the end-to-end tests sign in with: the real
// `oidc-provider` package, configured from one JSON argument:
//   { "port": 0, "clients": [ ...client metadata ], "users": [
//       { "id", "password", "email", "name", "groups", "amr" } ],
//     "id_token_ttl": seconds }
// It prints "ready <issuer>" once it listens. Users sign in on a small
// form at /interaction/<uid>; consent is implied.
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const users = new Map(cfg.users.map((u) => [u.id, u]));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rsa-1', alg: 'RS256', use: 'sig' };

const server = http.createServer();
await new Promise((ok) => server.listen(cfg.port || 0, '127.0.0.1', ok));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: cfg.clients,
  jwks: { keys: [signing] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  cookies: { keys: ['postern-test-idp'] },
  ttl: { IdToken: cfg.id_token_ttl || 3600 },
  // Refresh tokens go to every client allowed the refresh_token grant
  // (without the offline_access consent round trip).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const u = users.get(id);
    if (!u) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: u.email, email_verified: true, name: u.name, groups: u.groups || [] };
      },
    };
  },
});

const page = (uid, error) => `<!DOCTYPE html><html><head><title>Test provider sign-in</title></head><body>
<h1>Sign in</h1>${error ? `<p id="error">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<input name="login" id="login" placeholder="user"> <input name="password" id="password" type="password" placeholder="password">
<button type="submit" id="submit">Sign in</button></form></body></html>`;

const readForm = (req) => new Promise((ok, fail) => {
  let body = '';
  req.on('data', (c) => { body += c; if (body.length > 65536) req.destroy(); });
  req.on('end', () => ok(new URLSearchParams(body)));
  req.on('error', fail);
});

const callback = provider.callback();
server.on('request', async (req, res) => {
  const m = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(page(details.uid));
    }
    const form = await readForm(req);
    const u = users.get(form.get('login'));
    if (!u || u.password !== form.get('password')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(page(details.uid, 'wrong user or password'));
    }
    const grant = new provider.Grant({ accountId: u.id, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: u.id, amr: u.amr || ['pwd'] },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${e.message}`);
  }
});

process.stdout.on('error', () => {});
process.stdout.write(`ready ${issuer}\n`);
