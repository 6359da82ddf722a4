// Switchboard's service worker: keeps the app shell (styles, script, icons, manifest, the
// offline page) and the last version of each page loaded, so the app opens without a
// network and shows what it last saw. Event streams and form posts are never cached.
// Signing out drops every cached page first: what a signed-in person saw must not stay
// readable offline on a shared phone.
const SHELL = 'sb-shell-v1';
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
