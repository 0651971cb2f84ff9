// Drives Regie's OpenID Provider with the openid-client package: discovery,
// authorization code with PKCE S256, ID token validation, refresh and
// userinfo. It prints "AUTH <url>", reads the callback URL from stdin, and
// prints "RESULT <json>".
import * as client from 'openid-client';
import readline from 'node:readline';

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;
const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined,
  client.ClientSecretBasic(CLIENT_SECRET), { execute: [client.allowInsecureRequests] });
const verifier = client.randomPKCECodeVerifier();
const challenge = await client.calculatePKCECodeChallenge(verifier);
const state = client.randomState();
const nonce = client.randomNonce();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: REDIRECT_URI, scope: 'openid fhirUser launch/patient offline_access patient/*.rs',
  code_challenge: challenge, code_challenge_method: 'S256', state, nonce,
});
console.log('AUTH ' + url.href);
const rl = readline.createInterface({ input: process.stdin });
const line = await new Promise((resolve) => rl.once('line', resolve));
rl.close();
const tokens = await client.authorizationCodeGrant(config, new URL(line), {
  pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
});
const claims = tokens.claims();
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
const userinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
console.log('RESULT ' + JSON.stringify({ claims, patient: tokens.patient, refreshed: Boolean(refreshed.access_token), userinfo }));
