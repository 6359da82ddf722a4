// Switchboard's service worker: keeps the app shell (styles, script, icons, manifest, the
// offline page) and the last version of each page loaded, so the app opens without a
// network and shows what it last saw. Event streams and form posts are never cached.
// Signing out drops every cached page first: what a signed-in person saw must not stay
// readable offline on a shared phone.
const SHELL = 'sb-shell-v2';
const PAGES = 'sb-pages';
const ASSETS = [
  '/app/static/app.css',
  '/app/static/app.js',
  '/app/static/icon-192.png',
  '/app/static/icon-512.png',
  '/app/manifest.webmanifest',
  '/app/offline',
];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(SHELL).then((c) => c.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== PAGES).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method === 'POST' && url.origin === location.origin && url.pathname === '/app/logout') {
    ev.respondWith(caches.delete(PAGES).then(() => fetch(req)));
    return;
  }
  if (req.method !== 'GET' || url.origin !== location.origin || !url.pathname.startsWith('/app/')) return;
  if (url.pathname.endsWith('/events') || (req.headers.get('accept') || '').includes('text/event-stream')) return;
  if (url.pathname === '/app/ping') return;
  if (url.pathname.startsWith('/app/static/') || url.pathname === '/app/manifest.webmanifest') {
    ev.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
    return;
  }
  // Pages: the network first; the last version loaded when it is gone.
  ev.respondWith(
    fetch(req)
      .then((res) => {
        if (res.ok && !res.redirected && (res.headers.get('content-type') || '').startsWith('text/html')) {
          const copy = res.clone();
          caches.open(PAGES).then((c) => c.put(req, copy));
        }
        return res;
      })
      .catch(() => caches.match(req).then((hit) => hit || caches.match('/app/offline'))),
  );
});

// Web Push: a prompt, a reminder or an escalation the gateway sent (decrypted by the
// browser). One notification per prompt (its tag); the choices are its actions. A tap
// opens the run's page, with an action's choice ready to confirm; nothing is answered
// without that tap on the page.
self.addEventListener('push', (ev) => {
  let n = {};
  try { n = ev.data ? ev.data.json() : {}; } catch (e) { n = {}; }
  const max = (self.Notification && Notification.maxActions) || 2;
  const actions = (Array.isArray(n.choices) ? n.choices : []).slice(0, max)
    .map((c) => ({ action: String(c), title: String(c) }));
  ev.waitUntil(self.registration.showNotification(n.title || 'Switchboard', {
    body: n.body || '',
    tag: n.tag || undefined,
    renotify: Boolean(n.tag) && n.kind !== 'prompt',
    icon: '/app/static/icon-192.png',
    data: { url: typeof n.url === 'string' && n.url.startsWith('/app/') ? n.url : '/app/inbox' },
    actions,
  }));
});

self.addEventListener('notificationclick', (ev) => {
  ev.notification.close();
  const base = (ev.notification.data && ev.notification.data.url) || '/app/inbox';
  const url = ev.action ? `${base}?choice=${encodeURIComponent(ev.action)}` : base;
  ev.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((wins) => {
    const open = wins.find((w) => new URL(w.url).origin === location.origin && 'navigate' in w);
    return open ? open.navigate(url).then((w) => (w || open).focus()) : self.clients.openWindow(url);
  }));
});
