// Mock FCM HTTP v1, Google OAuth2 token endpoint and APNs provider API, for
// the push worker's tests, demo and benchmark.  One process, one TLS port on
// 127.0.0.1 speaking HTTP/2 (h2 by ALPN), plus a plain HTTP control port.
//
// It checks what the real services check: method and path, content-type,
// the bearer token (FCM: an access token this mock issued and has not
// revoked; APNs: an ES256 JWT with the expected kid, iss and a fresh iat,
// verified against the test APNs key), the OAuth assertion (RS256 against
// the test service account's public key; iss, scope, aud, iat, exp), the
// apns-topic and apns-push-type headers, the payload size (4 KB).
//
// What it answers depends on the device token: "ok-..." is delivered;
// "dead-..." is unregistered (FCM 404 UNREGISTERED, APNs 410), "bad-..." is
// malformed (400 INVALID_ARGUMENT / BadDeviceToken), "busy-..." is
// throttled (429 with Retry-After: 2), "down-..." meets a server error
// (FCM 503 UNAVAILABLE, APNs 503), "stall-..." never gets an answer.  A
// digit after the class ("down2-x", "stall1-x") limits it to that many
// requests, after which the token is delivered.
//
// Control port (HTTP/1.1): GET /counts returns what was received, as JSON;
// POST /reset forgets it; POST /revoke-oauth revokes every access token
// issued so far (FCM then answers 401); POST /expire-apns makes every APNs
// JWT seen so far "expired" (403 ExpiredProviderToken).
//
// Usage: node push_mock.js DIR, where DIR holds server.key, server.crt,
// fcm_sa.pub (PEM) and apns.pub (PEM); it writes DIR/port and
// DIR/control_port once listening.
'use strict';

const http = require('http');
const http2 = require('http2');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
const read = (f) => fs.readFileSync(path.join(dir, f));
const env = (name, value) => process.env[name] || value;

const CLIENT_EMAIL = env('MOCK_FCM_CLIENT_EMAIL', 'push-worker@membership-test.iam.gserviceaccount.com');
const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const APNS_KEY_ID = env('MOCK_APNS_KEY_ID', 'MOCKKEY001');
const APNS_TEAM_ID = env('MOCK_APNS_TEAM_ID', 'MOCKTEAM01');
const APNS_TOPICS = env('MOCK_APNS_TOPICS', 'app.membership.test').split(',');
const RETRY_AFTER = Number(env('MOCK_RETRY_AFTER', '2'));
const fcmKey = crypto.createPublicKey(read('fcm_sa.pub'));
const apnsKey = crypto.createPublicKey(read('apns.pub'));

let state;
function reset() {
	state = {
		oauth_exchanges: 0,
		fcm_requests: 0,
		apns_requests: 0,
		delivered: 0,
		tokens: {},           // device token -> { requests, delivered, last: {...} }
		apns_jwts: {},        // JWT -> requests that carried it
		rejected: {},         // reason -> count
		streams_max: 0,
		sessions: 0,
	};
}
reset();
const accessTokens = new Map();    // access token -> { revoked }
const expiredJwts = new Set();
const verifiedJwts = new Map();    // JWT -> iat, once verified

function reject(reason) {
	state.rejected[reason] = (state.rejected[reason] || 0) + 1;
}

function b64urlJson(part) {
	return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// Verify a compact JWT; returns { header, claims } or throws a reason.
function verifyJwt(jwt, alg, key) {
	const parts = String(jwt).split('.');
	if (parts.length !== 3) throw 'malformed_jwt';
	let header, claims;
	try {
		header = b64urlJson(parts[0]);
		claims = b64urlJson(parts[1]);
	} catch (e) {
		throw 'malformed_jwt';
	}
	if (header.alg !== alg) throw 'wrong_alg';
	const sig = Buffer.from(parts[2], 'base64url');
	const data = Buffer.from(parts[0] + '.' + parts[1]);
	const ok = alg === 'RS256'
		? crypto.verify('sha256', data, key, sig)
		: sig.length === 64 && crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
	if (!ok) throw 'bad_signature';
	return { header, claims };
}

function tokenState(token) {
	if (!state.tokens[token]) state.tokens[token] = { requests: 0, delivered: 0, last: null };
	return state.tokens[token];
}

// What to answer for a device token: 'ok', 'dead', 'bad', 'busy', 'down', 'stall'.
function classify(token, st) {
	const m = /^(ok|dead|bad|busy|down|stall)(\d*)-/.exec(token);
	if (!m) return 'ok';
	if (m[2] !== '' && st.requests > Number(m[2])) return 'ok';
	return m[1];
}

function readBody(stream, cb) {
	const chunks = [];
	stream.on('data', (c) => chunks.push(c));
	stream.on('end', () => cb(Buffer.concat(chunks)));
}

function answer(stream, status, body, headers) {
	if (stream.destroyed || stream.closed) return;
	const h = Object.assign({ ':status': status }, headers || {});
	if (body !== undefined) h['content-type'] = 'application/json; charset=UTF-8';
	stream.respond(h);
	stream.end(body === undefined ? undefined : JSON.stringify(body));
}

function fcmError(stream, code, status, errorCode, message, headers) {
	answer(stream, code, {
		error: {
			code, message, status,
			details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }],
		},
	}, headers);
}

function oauth(stream, headers, body) {
	if (!String(headers['content-type'] || '').startsWith('application/x-www-form-urlencoded')) {
		reject('oauth_content_type');
		return answer(stream, 400, { error: 'invalid_request' });
	}
	const form = new URLSearchParams(body.toString('utf8'));
	if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
		reject('oauth_grant_type');
		return answer(stream, 400, { error: 'unsupported_grant_type' });
	}
	const now = Math.floor(Date.now() / 1000);
	const aud = 'https://127.0.0.1:' + server.address().port + '/token';
	try {
		const { claims } = verifyJwt(form.get('assertion'), 'RS256', fcmKey);
		if (claims.iss !== CLIENT_EMAIL) throw 'oauth_iss';
		if (claims.scope !== SCOPE) throw 'oauth_scope';
		if (claims.aud !== aud) throw 'oauth_aud';
		if (typeof claims.iat !== 'number' || Math.abs(claims.iat - now) > 300) throw 'oauth_iat';
		if (typeof claims.exp !== 'number' || claims.exp <= now || claims.exp - claims.iat > 3600) throw 'oauth_exp';
	} catch (reason) {
		reject(typeof reason === 'string' ? reason : 'oauth_error');
		return answer(stream, 400, { error: 'invalid_grant', error_description: String(reason) });
	}
	state.oauth_exchanges++;
	const token = 'ya29.mock-' + crypto.randomBytes(12).toString('hex');
	accessTokens.set(token, { revoked: false });
	answer(stream, 200, { access_token: token, expires_in: 3599, token_type: 'Bearer' });
}

function fcm(stream, headers, body, project) {
	state.fcm_requests++;
	const auth = /^Bearer (.+)$/.exec(headers.authorization || '');
	const access = auth && accessTokens.get(auth[1]);
	if (!access || access.revoked) {
		reject('fcm_unauthenticated');
		return answer(stream, 401, { error: { code: 401, status: 'UNAUTHENTICATED',
			message: 'Request had invalid authentication credentials.' } });
	}
	if (!String(headers['content-type'] || '').startsWith('application/json')) {
		reject('fcm_content_type');
		return fcmError(stream, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'content-type must be application/json');
	}
	let message;
	try {
		message = JSON.parse(body.toString('utf8')).message;
		if (!message || typeof message.token !== 'string') throw 0;
		for (const v of Object.values(message.data || {}))
			if (typeof v !== 'string') throw 0;
	} catch (e) {
		reject('fcm_malformed');
		return fcmError(stream, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'Invalid JSON payload received.');
	}
	if (body.length > 4096 + 1024) {
		reject('fcm_too_big');
		return fcmError(stream, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'Message is too big');
	}
	const st = tokenState(message.token);
	st.requests++;
	st.last = { project, message };
	switch (classify(message.token, st)) {
	case 'dead':
		return fcmError(stream, 404, 'NOT_FOUND', 'UNREGISTERED', 'Requested entity was not found.');
	case 'bad':
		return fcmError(stream, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT',
			'The registration token is not a valid FCM registration token');
	case 'busy':
		return fcmError(stream, 429, 'RESOURCE_EXHAUSTED', 'QUOTA_EXCEEDED', 'Quota exceeded.',
			{ 'retry-after': String(RETRY_AFTER) });
	case 'down':
		return fcmError(stream, 503, 'UNAVAILABLE', 'UNAVAILABLE', 'The service is currently unavailable.');
	case 'stall':
		return;
	}
	st.delivered++;
	state.delivered++;
	answer(stream, 200, { name: 'projects/' + project + '/messages/' + crypto.randomBytes(8).toString('hex') });
}

function apnsError(stream, status, reason, headers) {
	answer(stream, status, { reason, timestamp: status === 410 ? Date.now() : undefined },
		Object.assign({ 'apns-id': crypto.randomUUID() }, headers || {}));
}

function apns(stream, headers, body, token) {
	state.apns_requests++;
	const auth = /^bearer (.+)$/i.exec(headers.authorization || '');
	if (!auth) {
		reject('apns_missing_token');
		return apnsError(stream, 403, 'MissingProviderToken');
	}
	const jwt = auth[1];
	const now = Math.floor(Date.now() / 1000);
	if (!verifiedJwts.has(jwt)) {
		try {
			const { header, claims } = verifyJwt(jwt, 'ES256', apnsKey);
			if (header.kid !== APNS_KEY_ID) throw 'apns_kid';
			if (claims.iss !== APNS_TEAM_ID) throw 'apns_iss';
			if (typeof claims.iat !== 'number' || claims.iat > now + 300) throw 'apns_iat';
			verifiedJwts.set(jwt, claims.iat);
		} catch (reason) {
			reject(typeof reason === 'string' ? reason : 'apns_error');
			return apnsError(stream, 403, 'InvalidProviderToken');
		}
	}
	if (expiredJwts.has(jwt) || verifiedJwts.get(jwt) < now - 3600) {
		reject('apns_expired_token');
		return apnsError(stream, 403, 'ExpiredProviderToken');
	}
	state.apns_jwts[jwt] = (state.apns_jwts[jwt] || 0) + 1;
	if (!APNS_TOPICS.includes(headers['apns-topic'])) {
		reject('apns_topic');
		return apnsError(stream, 400, headers['apns-topic'] ? 'TopicDisallowed' : 'MissingTopic');
	}
	if (!['alert', 'background'].includes(headers['apns-push-type'])) {
		reject('apns_push_type');
		return apnsError(stream, 400, 'InvalidPushType');
	}
	if (body.length > 4096) {
		reject('apns_too_big');
		return apnsError(stream, 413, 'PayloadTooLarge');
	}
	let payload;
	try {
		payload = JSON.parse(body.toString('utf8'));
		if (!payload.aps) throw 0;
	} catch (e) {
		reject('apns_malformed');
		return apnsError(stream, 400, 'PayloadEmpty');
	}
	const st = tokenState(token);
	st.requests++;
	st.last = {
		payload,
		topic: headers['apns-topic'], push_type: headers['apns-push-type'],
		priority: headers['apns-priority'], expiration: headers['apns-expiration'],
		collapse_id: headers['apns-collapse-id'],
	};
	switch (classify(token, st)) {
	case 'dead':
		return apnsError(stream, 410, 'Unregistered');
	case 'bad':
		return apnsError(stream, 400, 'BadDeviceToken');
	case 'busy':
		return apnsError(stream, 429, 'TooManyRequests', { 'retry-after': String(RETRY_AFTER) });
	case 'down':
		return apnsError(stream, 503, 'ServiceUnavailable');
	case 'stall':
		return;
	}
	st.delivered++;
	state.delivered++;
	stream.respond({ ':status': 200, 'apns-id': headers['apns-id'] || crypto.randomUUID() });
	stream.end();
}

const server = http2.createSecureServer({
	key: read('server.key'),
	cert: read('server.crt'),
	settings: { maxConcurrentStreams: 1000 },
	maxSessionMemory: 256,
	maxSessionInvalidFrames: 1000000,
	maxSessionRejectedStreams: 1000000,
});
let open = 0;
server.on('session', (session) => {
	state.sessions++;
	session.on('error', (e) => console.error('session error:', e.code || e.message));
	session.on('goaway', (code) => console.error('client goaway:', code));
	session.on('frameError', (type, code, id) => console.error('frame error:', type, code, id));
	session.on('stream', () => {
		open++;
		if (open > state.streams_max) state.streams_max = open;
	});
});
server.on('stream', (stream, headers) => {
	stream.on('close', () => open--);
	stream.on('error', () => {});
	const method = headers[':method'];
	const url = headers[':path'] || '';
	let m;
	readBody(stream, (body) => {
		if (method === 'POST' && url === '/token')
			return oauth(stream, headers, body);
		if (method === 'POST' && (m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(url)))
			return fcm(stream, headers, body, decodeURIComponent(m[1]));
		if (method === 'POST' && (m = /^\/3\/device\/([^/?]+)$/.exec(url)))
			return apns(stream, headers, body, decodeURIComponent(m[1]));
		reject('not_found');
		answer(stream, 404, { error: 'no such endpoint: ' + method + ' ' + url });
	});
});
server.on('error', (e) => { console.error(e); process.exit(1); });

const control = http.createServer((req, res) => {
	const reply = (obj) => {
		res.writeHead(200, { 'content-type': 'application/json' });
		res.end(JSON.stringify(obj));
	};
	if (req.method === "GET" && req.url === "/totals")
		return reply({ oauth_exchanges: state.oauth_exchanges, fcm_requests: state.fcm_requests,
			apns_requests: state.apns_requests, delivered: state.delivered, rejected: state.rejected,
			streams_max: state.streams_max, sessions: state.sessions });
	if (req.method === 'GET' && req.url === '/counts') {
		const jwts = Object.keys(state.apns_jwts).length;
		return reply(Object.assign({}, state, { apns_jwts: undefined, apns_distinct_jwts: jwts }));
	}
	if (req.method === 'POST' && req.url === '/reset') {
		reset();
		return reply({ reset: true });
	}
	if (req.method === 'POST' && req.url === '/revoke-oauth') {
		for (const t of accessTokens.values()) t.revoked = true;
		return reply({ revoked: accessTokens.size });
	}
	if (req.method === 'POST' && req.url === '/expire-apns') {
		for (const j of verifiedJwts.keys()) expiredJwts.add(j);
		return reply({ expired: expiredJwts.size });
	}
	res.writeHead(404);
	res.end();
});

server.listen(0, '127.0.0.1', () => {
	control.listen(0, '127.0.0.1', () => {
		fs.writeFileSync(path.join(dir, 'control_port.tmp'), String(control.address().port));
		fs.renameSync(path.join(dir, 'control_port.tmp'), path.join(dir, 'control_port'));
		fs.writeFileSync(path.join(dir, 'port.tmp'), String(server.address().port));
		fs.renameSync(path.join(dir, 'port.tmp'), path.join(dir, 'port'));
	});
});
process.on('SIGTERM', () => process.exit(0));
