// node-oidc-provider peer for the Keyturn benchmark: one confidential client, the
// client_credentials grant with ES256 JWT access tokens for one resource indicator
// (RFC 8707), and token introspection (RFC 7662). One process, in-memory adapter.
//
// Environment: PORT (required), CLIENT_ID, CLIENT_SECRET. Prints "listening" when ready.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const clientId = process.env.CLIENT_ID ?? 'bench-client';
const clientSecret = process.env.CLIENT_SECRET ?? 'bench-client-secret-0123456789abcdef';
// JWT access tokens for this resource (what the client_credentials scenario measures).
const JWT_RESOURCE = 'urn:keyturn-bench:api';
// Opaque access tokens for this one: JWT access tokens are not stored by the provider, so
// introspection can only find opaque ones (what the introspection scenario measures).
const OPAQUE_RESOURCE = 'urn:keyturn-bench:opaque';

const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ format: 'jwk' });

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'api:read',
    id_token_signed_response_alg: 'ES256', // the only key is ES256
  }],
  scopes: ['openid', 'offline_access', 'api:read'],
  jwks: { keys: [{ ...signingKey, alg: 'ES256', use: 'sig', kid: 'bench-es256' }] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => JWT_RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        const opaque = resourceIndicator === OPAQUE_RESOURCE;
        return {
          scope: 'api:read',
          audience: resourceIndicator,
          accessTokenTTL: 600,
          accessTokenFormat: opaque ? 'opaque' : 'jwt',
          ...(opaque ? {} : { jwt: { sign: { alg: 'ES256' } } }),
        };
      },
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
