// A loopback Web Push service, standing in for the browsers' push services (FCM, Mozilla
// autopush, Apple) that this machine cannot reach. It plays both ends a real one joins:
// `GET /subscribe?key=<VAPID public key>` is what `pushManager.subscribe()` gives a page (an
// endpoint, the browser's P-256 key and auth secret, made here), and `POST /push/<id>` is
// the push service's receiving end. Each push is checked as RFC 8292 says (the VAPID JWT:
// ES256 signed by `k`, which must be the key the subscription was made for; `aud` the
// endpoint's origin; `exp` within 24 hours; a `sub` contact) and decrypted as RFC 8291 and
// RFC 8188 say, with node's own crypto: an implementation independent of the gateway's.
// `GET /received` lists what arrived (decrypted); `POST /gone/<id>` makes a subscription
// answer 410 from then on. Prints `{"url": ...}` when listening.
import http from 'node:http';
import crypto from 'node:crypto';

const subs = new Map();
const received = [];
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const unb64u = (s) => Buffer.from(s, 'base64url');

function publicJwk(raw) {
  if (raw.length !== 65 || raw[0] !== 4) throw new Error('k is not an uncompressed P-256 key');
  return { kty: 'EC', crv: 'P-256', x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33)) };
}

// RFC 8292: `Authorization: vapid t=<JWT>, k=<key>`.
function checkVapid(header, sub, origin) {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header || '');
  if (!m) throw new Error(`Authorization is not "vapid t=…, k=…": ${header}`);
  const [, jwt, k] = m;
  if (k !== sub.serverKey) throw new Error('k is not the key this subscription was made for');
  const [h, p, s] = jwt.split('.');
  const head = JSON.parse(unb64u(h));
  if (head.alg !== 'ES256' || head.typ !== 'JWT') throw new Error(`JWT header ${JSON.stringify(head)}`);
  const key = crypto.createPublicKey({ key: publicJwk(unb64u(k)), format: 'jwk' });
  const ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, unb64u(s));
  if (!ok) throw new Error('the JWT signature does not verify with k');
  const claims = JSON.parse(unb64u(p));
  const now = Date.now() / 1000;
  if (claims.aud !== origin) throw new Error(`aud ${claims.aud} is not ${origin}`);
  if (!(claims.exp > now && claims.exp <= now + 24 * 3600 + 60)) throw new Error(`exp ${claims.exp}`);
  if (!/^(mailto:|https:)/.test(claims.sub || '')) throw new Error(`sub ${claims.sub}`);
  return claims;
}

const hkdf = (salt, ikm, info, len) => Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, len));

// RFC 8291 / 8188: salt(16) rs(4) idlen(1) keyid(65: the sender's key) then one record.
function decrypt(body, sub) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const senderKey = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  const secret = sub.ecdh.computeSecret(senderKey);
  const info = Buffer.concat([Buffer.from('WebPush: info\0'), sub.publicKey, senderKey]);
  const ikm = hkdf(sub.auth, secret, info, 32);
  const cek = hkdf(salt, ikm, Buffer.from('Content-Encoding: aes128gcm\0'), 16);
  const nonce = hkdf(salt, ikm, Buffer.from('Content-Encoding: nonce\0'), 12);
  const d = crypto.createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(record.subarray(record.length - 16));
  const plain = Buffer.concat([d.update(record.subarray(0, record.length - 16)), d.final()]);
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (plain[end] !== 2) throw new Error('the last record has no 0x02 delimiter');
  return JSON.parse(plain.subarray(0, end).toString('utf8'));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const origin = `http://${req.headers.host}`;
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body ?? {}));
  };
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (req.method === 'GET' && url.pathname === '/subscribe') {
      const id = crypto.randomUUID();
      const ecdh = crypto.createECDH('prime256v1');
      const publicKey = ecdh.generateKeys();
      const auth = crypto.randomBytes(16);
      subs.set(id, { ecdh, publicKey, auth, serverKey: url.searchParams.get('key'), gone: false });
      return reply(200, { endpoint: `${origin}/push/${id}`, expirationTime: null,
        keys: { p256dh: b64u(publicKey), auth: b64u(auth) } });
    }
    if (req.method === 'GET' && url.pathname === '/received') return reply(200, received);
    const gone = /^\/gone\/([\w-]+)$/.exec(url.pathname);
    if (req.method === 'POST' && gone && subs.has(gone[1])) {
      subs.get(gone[1]).gone = true;
      return reply(200);
    }
    const push = /^\/push\/([\w-]+)$/.exec(url.pathname);
    if (req.method !== 'POST' || !push || !subs.has(push[1])) return reply(404, { error: 'no such subscription' });
    const sub = subs.get(push[1]);
    if (sub.gone) return reply(410, { error: 'unsubscribed' });
    try {
      if (req.headers['content-encoding'] !== 'aes128gcm') throw new Error('Content-Encoding is not aes128gcm');
      if (!/^\d+$/.test(req.headers.ttl || '')) throw new Error('no TTL');
      if (body.length > 4096) throw new Error('more than 4096 bytes');
      const claims = checkVapid(req.headers.authorization, sub, origin);
      const notice = decrypt(body, sub);
      received.push({ subscription: push[1], claims, notice,
        ttl: Number(req.headers.ttl), urgency: req.headers.urgency || null, topic: req.headers.topic || null });
      res.writeHead(201, { location: `${origin}/message/${received.length}` });
      return res.end();
    } catch (e) {
      received.push({ subscription: push[1], error: String(e.message || e) });
      return reply(400, { error: String(e.message || e) });
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }));
});
