'use strict';
// The mambad protocol for the VS Code extension, with no dependency on `vscode`:
// JSON-RPC 2.0 over the daemon's Unix socket (NDJSON), one persistent connection made
// on first use and remade after a failure, and the debounce/session/cancel logic of
// inline suggestions. Runs under plain node (node --test).
const fs = require('fs');
const net = require('net');
const path = require('path');

/** The socket: $MAMBAD_SOCKET, else the first that exists of $XDG_RUNTIME_DIR/mambad.sock,
 * /tmp/mambad.sock, /run/mambad/mambad.sock (else the first of them). */
function defaultSocketPath(env = process.env) {
  if (env.MAMBAD_SOCKET) return env.MAMBAD_SOCKET;
  const candidates = [];
  if (env.XDG_RUNTIME_DIR) candidates.push(path.join(env.XDG_RUNTIME_DIR, 'mambad.sock'));
  candidates.push('/tmp/mambad.sock', '/run/mambad/mambad.sock');
  return candidates.find((p) => fs.existsSync(p)) || candidates[0];
}

/** A JSON-RPC error from the daemon (code, message, data), or code -1 with
 * `transport: true` when the daemon could not be reached. */
class MambadError extends Error {
  constructor(code, message, data, transport = false) {
    super(message);
    this.code = code;
    this.data = data;
    this.transport = transport;
  }
}

const CANCELLED = -32800;

class MambadClient {
  /** socketPath: a path or a function returning one (read at each connect). */
  constructor({ socketPath, log } = {}) {
    this.socketPath = socketPath || (() => defaultSocketPath());
    this.log = log || (() => {});
    this.socket = null;
    this.connected = false;
    this.path = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> { resolve, reject, onProgress }
    this.buffer = '';
    this.connects = 0;
    this.cancelsSent = 0;
  }

  _connect() {
    const target = typeof this.socketPath === 'function' ? this.socketPath() : this.socketPath;
    this.path = target;
    const socket = net.createConnection(target);
    this.socket = socket;
    this.connected = false;
    this.buffer = '';
    socket.setEncoding('utf8'); // a character split across reads is kept whole
    socket.on('connect', () => {
      this.connected = true;
      this.connects += 1;
      this.log(`connected to ${target}`);
    });
    socket.on('data', (chunk) => this._onData(chunk));
    socket.on('error', (err) => {
      const message = this.connected
        ? `connection to ${target} failed: ${err.code || err.message}`
        : `cannot connect to ${target}: ${err.code || err.message}`;
      this._closed(socket, message);
    });
    socket.on('close', () => this._closed(socket, `the daemon closed the connection at ${target}`));
  }

  _closed(socket, message) {
    if (this.socket !== socket) return;
    this.socket = null;
    this.connected = false;
    socket.destroy();
    this.log(message);
    const pending = this.pending;
    this.pending = new Map();
    for (const handlers of pending.values()) handlers.reject(new MambadError(-1, message, undefined, true));
  }

  _onData(chunk) {
    this.buffer += chunk;
    let nl;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        this.log(`bad message from the daemon: ${line.slice(0, 200)}`);
        continue;
      }
      this._dispatch(message);
    }
  }

  _dispatch(message) {
    if (message.method === 'complete/progress') {
      const handlers = this.pending.get(message.params && message.params.id);
      if (handlers && handlers.onProgress) handlers.onProgress(message.params);
    } else if (message.id !== undefined && message.id !== null) {
      const handlers = this.pending.get(message.id);
      if (!handlers) return;
      this.pending.delete(message.id);
      if (message.error) {
        const { code, message: text, data } = message.error;
        handlers.reject(new MambadError(code, text, data));
      } else {
        handlers.resolve(message.result);
      }
    }
  }

  _send(message) {
    if (!this.socket) this._connect();
    this.socket.write(JSON.stringify(message) + '\n');
  }

  /** Sends a request; resolves with its result, rejects with a MambadError.
   * onProgress(params) gets each complete/progress; aborting `signal` sends
   * $/cancelRequest (the promise then rejects with code -32800). `onId(id)` is told the id. */
  request(method, params, { onProgress, signal, onId } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.log(`-> ${method} #${id}`);
      if (onId) onId(id);
      this._send({ jsonrpc: '2.0', id, method, params });
      if (signal) {
        if (signal.aborted) this.cancel(id);
        else signal.addEventListener('abort', () => this.cancel(id), { once: true });
      }
    });
  }

  notify(method, params) {
    this._send({ jsonrpc: '2.0', method, params });
  }

  /** Asks the daemon to stop request `id`; it still answers (-32800). */
  cancel(id) {
    if (this.pending.has(id) && this.socket) {
      this.log(`-> $/cancelRequest #${id}`);
      this.cancelsSent += 1;
      this.notify('$/cancelRequest', { id });
    }
  }

  close() {
    if (this.socket) this._closed(this.socket, 'closed by the client');
  }
}

/** Resolves after `ms`, or with false at once when `signal` aborts. */
function delay(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve(false);
    const timer = setTimeout(() => resolve(true), ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(false); }, { once: true });
  });
}

/** The last `chars` UTF-16 units of `text`, never starting with half a surrogate pair. */
function boundPrefix(text, chars) {
  if (text.length <= chars) return text;
  let start = text.length - chars;
  const unit = text.charCodeAt(start);
  if (unit >= 0xdc00 && unit <= 0xdfff) start += 1;
  return text.slice(start);
}

/** Inline suggestions as an editor asks for them: one call per keystroke, each with an
 * AbortSignal that the editor aborts when a newer keystroke comes (VS Code's
 * CancellationToken). Waits out the debounce, then asks with the document as session. */
class Suggester {
  constructor(client, settings) {
    this.client = client;
    this.settings = settings; // () => { debounceMs, maxTokens, temperature, singleLine, contextChars, stop }
    this.stats = { requests: 0, cancelledReplies: 0, shown: 0, errors: 0 };
    this.lastError = null;
  }

  /** The suggestion for `prefix` in document `key`, or null when superseded or failed. */
  async suggest(key, prefix, signal) {
    const s = this.settings();
    if (!(await delay(s.debounceMs, signal))) return null;
    const params = {
      prompt: boundPrefix(prefix, s.contextChars),
      maxTokens: s.maxTokens,
      temperature: s.temperature,
      singleLine: s.singleLine,
      session: `vscode:${process.pid}:${key}`,
    };
    if (s.stop && s.stop.length) params.stop = s.stop;
    this.stats.requests += 1;
    try {
      const result = await this.client.request('complete', params, { signal });
      this.lastError = null;
      if (signal && signal.aborted) return null; // finished before its cancellation arrived
      if (!result.text) return null;
      this.stats.shown += 1;
      return result.text;
    } catch (err) {
      if (err.code === CANCELLED) {
        this.stats.cancelledReplies += 1;
      } else {
        this.stats.errors += 1;
        this.lastError = err;
      }
      return null;
    }
  }
}

module.exports = { MambadClient, MambadError, Suggester, defaultSocketPath, boundPrefix, delay, CANCELLED };
