// Switchboard's web app in the browser: live updates over the gateway's event streams
// (proxied same-origin at /app/events and /app/runs/ID/events), forms sent without leaving
// the page, the offline banner and the service worker. Every page works without it.
(() => {
  'use strict';
  const body = document.body;
  const page = body.dataset.page;
  const offline = document.getElementById('offline');
  const note = document.getElementById('live-note');

  const showOffline = (on) => { if (offline) offline.hidden = !on; };
  let hush = null;
  const say = (text) => {
    if (!note) return;
    note.textContent = text;
    clearTimeout(hush);
    hush = setTimeout(() => { note.textContent = ''; }, 4000);
  };
  window.addEventListener('offline', () => showOffline(true));
  window.addEventListener('online', () => showOffline(false));
  showOffline(!navigator.onLine);

  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch(() => {});
  }
  if (page === 'login' && 'caches' in window) {
    caches.delete('sb-pages'); // signed out: forget the pages this device kept
  } else if (page !== 'offline') {
    fetch('/app/ping', { cache: 'no-store', headers: { 'X-Requested-With': 'fetch' } })
      .then((r) => { if (r.status === 401) location.href = '/app/login'; })
      .catch(() => showOffline(true));
  }

  // Parts of each page that are replaced by their current version when something happens.
  const parts = {
    inbox: ['#inbox'], runs: ['#runs'], run: ['#run-head', '#actions', '#timeline'],
    chat: ['#run-head', '#chat', '#composer'],
  }[page] || [];
  const onRunPage = page === 'run' || page === 'chat';
  // The chat view keeps its newest message in sight.
  const toEnd = () => { if (page === 'chat') window.scrollTo(0, document.body.scrollHeight); };
  toEnd();
  let pending = null;
  let latest = 0; // only the newest refresh may replace parts: an older reply is stale
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const mine = ++latest;
      try {
        const r = await fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } });
        if (r.redirected && r.url.endsWith('/app/login')) { location.href = '/app/login'; return; }
        if (!r.ok) return;
        const text = await r.text();
        if (mine !== latest) return;
        const doc = new DOMParser().parseFromString(text, 'text/html');
        for (const sel of parts) {
          const fresh = doc.querySelector(sel);
          const old = document.querySelector(sel);
          const typing = old && old.contains(document.activeElement) && document.activeElement.value;
          if (fresh && old && !typing) old.replaceWith(fresh);
        }
        bindForms();
        toEnd();
      } catch (e) {
        showOffline(!navigator.onLine);
      }
    }, 120);
  };

  // Runs answered from this page, followed until they end.
  const recent = document.getElementById('recent');
  const watched = new Map();
  const seen = new Map(); // run id → what the stream last said of it (it may beat the reply)
  const remember = (form, answer) => {
    if (!recent) return;
    const li = document.createElement('li');
    li.textContent = `✓ ${form.dataset.flow || 'run'}: ${answer} · `;
    const status = document.createElement('span');
    status.className = 'status';
    status.textContent = seen.get(form.dataset.run) || 'sent';
    li.append(status);
    recent.prepend(li);
    watched.set(form.dataset.run, status);
  };

  const ENDS = { run_completed: 'completed', run_failed: 'failed', run_cancelled: 'cancelled' };
  const MATTERS = ['ask', 'pause', 'resume', 'run_started', 'run_completed', 'run_failed', 'run_cancelled'];
  const stream = body.dataset.stream;
  if (stream && 'EventSource' in window) {
    const es = new EventSource(`${stream}?after=${body.dataset.after || 0}`);
    es.addEventListener('step', (ev) => {
      let rec;
      try { rec = JSON.parse(ev.data).record; } catch (e) { return; }
      const kind = rec.effect ? rec.effect.type : '';
      const answered = rec.result && rec.result.response !== undefined;
      const said = ENDS[kind] || (answered ? 'answered' : null);
      if (said) {
        seen.set(rec.run_id, said);
        const status = watched.get(rec.run_id);
        if (status) status.textContent = said;
      }
      if (onRunPage) {
        if (rec.run_id !== body.dataset.run) return;
        const live = document.getElementById('live');
        if (live && rec.status === 'completed' && rec.idempotency_key) { live.hidden = true; live.textContent = ''; }
        refresh();
      } else if (answered || MATTERS.includes(kind) || rec.status === 'waiting') {
        refresh();
      }
    });
    es.addEventListener('llm.delta', (ev) => {
      if (!onRunPage) return;
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      const live = document.getElementById('live');
      if (d.run_id !== body.dataset.run || !live) return;
      live.hidden = false;
      live.textContent += d.delta;
      toEnd();
    });
    es.addEventListener('done', () => es.close());
    // Catch up with anything that happened between rendering and connecting.
    es.addEventListener('open', () => { showOffline(false); refresh(); });
  }

  // Forms marked `live` are sent in the background; the page stays.
  function bindForms() {
    for (const form of document.querySelectorAll('form.live')) {
      if (form.dataset.bound) continue;
      form.dataset.bound = '1';
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const data = new FormData(form);
        if (ev.submitter && ev.submitter.name) data.set(ev.submitter.name, ev.submitter.value);
        const answer = data.get('response') || data.get('response_text') || '';
        const buttons = form.querySelectorAll('button');
        buttons.forEach((b) => { b.disabled = true; });
        try {
          const r = await fetch(form.action, {
            method: 'POST',
            body: new URLSearchParams(data),
            headers: { 'X-Requested-With': 'fetch' },
          });
          const reply = await r.json().catch(() => ({}));
          if (r.status === 401) { location.href = '/app/login'; return; }
          if (r.ok) {
            say('Sent.');
            if (form.classList.contains('answer')) {
              remember(form, answer);
              const card = form.closest('.card');
              if (card && page === 'inbox') card.remove();
            }
          } else {
            say((reply.error && reply.error.message) || 'Not sent.');
          }
        } catch (e) {
          say('Not sent: you seem to be offline.');
          showOffline(true);
        } finally {
          buttons.forEach((b) => { b.disabled = false; });
          refresh();
        }
      });
    }
  }
  bindForms();

  // Notifications on this device: a subscription made with the gateway's key, handed to
  // the gateway with this session's token. The button shows only where push works and the
  // person has not refused it; the service worker shows what arrives.
  const pushOn = document.getElementById('push-on');
  const pushable = pushOn && 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  const keyBytes = (b64) => {
    const raw = atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  };
  // Hands a subscription to the gateway (again: the same browser replaces its row).
  const register = (sub) => {
    const json = sub.toJSON();
    const data = new URLSearchParams({ csrf: pushOn.dataset.csrf, endpoint: json.endpoint, p256dh: json.keys.p256dh, auth: json.keys.auth });
    return fetch('/app/push', { method: 'POST', body: data, headers: { 'X-Requested-With': 'fetch' } });
  };
  if (pushable && Notification.permission !== 'denied') {
    // Once per visit, the browser's subscription is handed over again: the gateway may have
    // dropped it (a revoked sign-in, a push service's 410). If it is refused, offer the button.
    navigator.serviceWorker.ready
      .then(async (reg) => {
        let sub = await reg.pushManager.getSubscription();
        if (!sub || Notification.permission !== 'granted') { pushOn.hidden = false; return; }
        // A subscription made for another key (the gateway's key changed: an upgrade from a
        // build that kept it in another form) is refused by the push service: make a new one.
        const had = sub.options && sub.options.applicationServerKey;
        if (had) {
          const k = await (await fetch('/app/push/key', { headers: { 'X-Requested-With': 'fetch' } })).json();
          const now = keyBytes(k.public_key);
          const was = new Uint8Array(had);
          if (was.length !== now.length || was.some((b, i) => b !== now[i])) {
            await sub.unsubscribe();
            sessionStorage.removeItem('sb-push');
            sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: now });
          }
        }
        if (sessionStorage.getItem('sb-push') === sub.endpoint) { pushOn.hidden = true; return; }
        const r = await register(sub);
        pushOn.hidden = r.ok;
        if (r.ok) sessionStorage.setItem('sb-push', sub.endpoint);
      })
      .catch(() => { pushOn.hidden = false; });
    pushOn.addEventListener('click', async () => {
      pushOn.disabled = true;
      try {
        if (await Notification.requestPermission() !== 'granted') { say('Notifications are off.'); return; }
        const k = await (await fetch('/app/push/key', { headers: { 'X-Requested-With': 'fetch' } })).json();
        const reg = await navigator.serviceWorker.ready;
        // A fresh subscription: an old one may belong to an earlier sign-in.
        const old = await reg.pushManager.getSubscription();
        if (old) await old.unsubscribe();
        const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(k.public_key) });
        const r = await register(sub);
        const reply = await r.json().catch(() => ({}));
        if (r.ok) { pushOn.hidden = true; sessionStorage.setItem('sb-push', sub.endpoint); say('This device will be notified.'); }
        else say((reply.error && reply.error.message) || 'Notifications could not be turned on.');
      } catch (e) {
        say('Notifications could not be turned on here.');
      } finally {
        pushOn.disabled = false;
      }
    });
  }
})();
