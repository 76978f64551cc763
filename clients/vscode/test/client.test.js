'use strict';
// src/client.js against a real daemon ($MAMBAD_SOCKET, started with --max-active 1 so a
// test can keep a request queued behind one of its own). Run: node --test clients/vscode/test/
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { MambadClient, MambadError, Suggester, defaultSocketPath, boundPrefix } = require('../src/client');

const SOCKET = process.env.MAMBAD_SOCKET;
assert.ok(SOCKET, 'MAMBAD_SOCKET is not set');

/** A connection of the test's own: send, and wait for the message matching a predicate. */
function raw(socketPath = SOCKET) {
  const socket = net.createConnection(socketPath);
  socket.setEncoding('utf8');
  const messages = [];
  const waiters = [];
  let buffer = '';
  socket.on('data', (chunk) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      messages.push(JSON.parse(buffer.slice(0, nl)));
      buffer = buffer.slice(nl + 1);
    }
    for (const w of [...waiters]) w();
  });
  const conn = {
    send(message) { socket.write(JSON.stringify({ jsonrpc: '2.0', ...message }) + '\n'); },
    receive(predicate) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const i = messages.findIndex(predicate);
          if (i < 0) return;
          waiters.splice(waiters.indexOf(check), 1);
          resolve(messages.splice(i, 1)[0]);
        };
        waiters.push(check);
        socket.once('error', reject);
        check();
      });
    },
    async call(method, params) {
      conn.send({ id: 1, method, params });
      const reply = await conn.receive((m) => m.id === 1);
      assert.equal(reply.error, undefined, `${method}: ${JSON.stringify(reply.error)}`);
      return reply.result;
    },
    close() { socket.end(); },
  };
  return conn;
}

async function call(method, params, socketPath) {
  const conn = raw(socketPath);
  try { return await conn.call(method, params); } finally { conn.close(); }
}

async function reference(prompt, maxTokens = 12, singleLine = true) {
  const { text } = await call('complete', { prompt, maxTokens, singleLine, temperature: 0 });
  assert.notEqual(text, '', `the daemon completes ${JSON.stringify(prompt)}`);
  return text;
}

async function waitFor(what, condition, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const requests = async () => (await call('status')).requests;
const settings = (over = {}) => () => ({ debounceMs: 60, maxTokens: 12, temperature: 0, singleLine: true, contextChars: 6000, stop: [], ...over });

test('the default socket follows MAMBAD_SOCKET, then XDG_RUNTIME_DIR, /tmp, /run/mambad', () => {
  assert.equal(defaultSocketPath({ MAMBAD_SOCKET: '/x.sock', XDG_RUNTIME_DIR: '/run/user/1' }), '/x.sock');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mambad-js-'));
  fs.writeFileSync(path.join(dir, 'mambad.sock'), '');
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: dir }), path.join(dir, 'mambad.sock'));
  if (!fs.existsSync('/tmp/mambad.sock') && !fs.existsSync('/run/mambad/mambad.sock')) {
    assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: '/nonexistent' }), '/nonexistent/mambad.sock');
  }
  fs.rmSync(dir, { recursive: true });
  assert.equal(boundPrefix('ab😀c', 3), '😀c');
  assert.equal(boundPrefix('ab😀c', 2), 'c', 'never half a surrogate pair');
});

test('requests give the same results as the protocol', async () => {
  const client = new MambadClient({ socketPath: SOCKET });
  try {
    const text = 'Les élèves ont mangé 42 crêpes 🥞 à 12h30.';
    const tokenized = await client.request('tokenize', { text, pieces: true });
    assert.deepEqual(tokenized, await call('tokenize', { text, pieces: true }));
    assert.deepEqual(await client.request('detokenize', { tokens: tokenized.tokens }), { text });
    assert.deepEqual(await client.request('model/info'), await call('model/info'));
    const embed = await client.request('embed', { input: ['def f(', 'class A:'] });
    assert.deepEqual(embed.embeddings, (await call('embed', { input: ['def f(', 'class A:'] })).embeddings);
    // streamed deltas add up to the text the daemon gives without streaming
    const deltas = [];
    const streamed = await client.request('complete', { prompt: text, maxTokens: 16, stream: true },
      { onProgress: (p) => deltas.push(p.text) });
    assert.equal(streamed.text, await reference(text, 16, false));
    assert.equal(deltas.join(''), streamed.text);
    assert.ok(deltas.length > 1);
    await assert.rejects(client.request('detokenize', { tokens: [99999999] }),
      (err) => err instanceof MambadError && err.code === -32602 && err.data.field === 'tokens[0]');
    assert.equal(client.connects, 1, 'one connection for all of them');
  } finally {
    client.close();
  }
});

test('a suggestion is the completion of the prefix; keystrokes within the debounce ask once', async () => {
  const client = new MambadClient({ socketPath: SOCKET });
  const suggester = new Suggester(client, settings({ debounceMs: 300 }));
  try {
    assert.equal(await suggester.suggest('file:///a.py', 'def fibonacci(n):'), await reference('def fibonacci(n):'));
    // as VS Code does: each keystroke cancels the previous call's token
    const calls = [];
    let controller = null;
    for (const prefix of ['w', 'wh', 'whi', 'whil', 'while']) {
      if (controller) controller.abort();
      controller = new AbortController();
      calls.push(suggester.suggest('file:///a.py', prefix, controller.signal));
      await new Promise((r) => setTimeout(r, 20));
    }
    const results = await Promise.all(calls);
    assert.deepEqual(results.slice(0, 4), [null, null, null, null]);
    assert.equal(results[4], await reference('while'));
    assert.equal(suggester.stats.requests, 2, 'one request for the first, one for the burst');
    assert.equal(client.cancelsSent, 0, 'nothing was in flight to cancel');
  } finally {
    client.close();
  }
});

test('typing over a queued request cancels it; its -32800 is ignored', async () => {
  const client = new MambadClient({ socketPath: SOCKET });
  const suggester = new Suggester(client, settings());
  const blocker = raw();
  try {
    blocker.send({ id: 7, method: 'complete', params: { tokens: [1, 2, 3], maxTokens: 8000, stream: true, cache: false } });
    await blocker.receive((m) => m.method === 'complete/progress');
    const before = await requests();
    const first = new AbortController();
    const abc = suggester.suggest('file:///b.py', 'abc', first.signal);
    await waitFor('abc queued', async () => suggester.stats.requests === 1 && (await requests()).queued === 1);
    first.abort(); // the next keystroke
    const abcd = suggester.suggest('file:///b.py', 'abcd', new AbortController().signal);
    assert.equal(await abc, null);
    assert.equal(client.cancelsSent, 1, '$/cancelRequest sent');
    assert.equal(suggester.stats.cancelledReplies, 1, 'the -32800 came back and was dropped');
    await waitFor('abcd queued', async () => (await requests()).queued === 1);
    blocker.send({ method: '$/cancelRequest', params: { id: 7 } });
    assert.equal((await blocker.receive((m) => m.id === 7)).error.code, -32800);
    assert.equal(await abcd, await reference('abcd'));
    assert.equal((await requests()).cancelled, before.cancelled + 2, 'abc and the blocker');
    assert.equal(suggester.stats.shown, 1, 'only the last prefix was shown');
  } finally {
    blocker.close();
    client.close();
  }
});

test('typing over a running completion stops it in the daemon', async () => {
  const client = new MambadClient({ socketPath: SOCKET });
  const suggester = new Suggester(client, settings({ maxTokens: 4000, singleLine: false }));
  try {
    const before = await requests();
    const first = new AbortController();
    const long = suggester.suggest('file:///c.py', 'for', first.signal);
    await waitFor('the long completion running', async () => (await requests()).active === 1);
    first.abort();
    assert.equal(await long, null);
    await waitFor('it stopped', async () => (await requests()).active === 0);
    assert.equal((await requests()).cancelled, before.cancelled + 1);
    assert.equal(suggester.stats.cancelledReplies, 1);
  } finally {
    client.close();
  }
});

function startDaemon(socketPath) {
  const daemon = spawn(process.env.MAMBAD_BIN, ['serve', '--model', process.env.MAMBAD_MODEL, '--socket', socketPath,
    '--precision', 'exact'], { env: { ...process.env, MAMBAD_THREADS: '1' }, stdio: 'ignore' });
  daemon.exited = new Promise((resolve) => daemon.on('exit', (code) => resolve(code)));
  return waitFor('the daemon', async () => {
    try { return (await call('status', undefined, socketPath)).state === 'ready' && daemon; } catch { return false; }
  });
}

test('no daemon gives a clear error; the connection is remade after a restart', async () => {
  assert.ok(process.env.MAMBAD_BIN && process.env.MAMBAD_MODEL, 'MAMBAD_BIN and MAMBAD_MODEL are set');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mambad-js-'));
  const socketPath = path.join(dir, 'd.sock');
  const client = new MambadClient({ socketPath });
  const suggester = new Suggester(client, settings());
  try {
    await assert.rejects(client.request('status'),
      (err) => err.transport && err.message === `cannot connect to ${socketPath}: ENOENT`);
    let daemon = await startDaemon(socketPath);
    const expected = await suggester.suggest('file:///d.py', 'foo');
    assert.equal(expected, await reference('foo'), 'same model, same completion as the main daemon');
    daemon.kill('SIGTERM');
    assert.equal(await daemon.exited, 0);
    assert.equal(await suggester.suggest('file:///d.py', 'foo'), null);
    assert.match(suggester.lastError.message, /the daemon closed the connection|cannot connect/);
    daemon = await startDaemon(socketPath);
    assert.equal(await suggester.suggest('file:///d.py', 'foo'), expected);
    assert.equal(client.connects, 2);
    daemon.kill('SIGTERM');
    assert.equal(await daemon.exited, 0);
  } finally {
    client.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
