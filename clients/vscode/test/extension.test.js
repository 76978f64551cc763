'use strict';
// src/extension.js against a real daemon. VS Code itself cannot be installed here, so
// `vscode` is a small stand-in with only what the extension uses; its settings come
// from package.json's contributes.configuration (reading an undeclared key fails), so
// the manifest and the code cannot drift apart.
const test = require('node:test');
const { after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const Module = require('node:module');

const SOCKET = process.env.MAMBAD_SOCKET;
const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
const declared = manifest.contributes.configuration.properties;

const settings = {};
const registered = { providers: [], commands: {} };
const messages = [];
const configurationListeners = [];
function setSetting(name, value) {
  settings[name] = value;
  configurationListeners.forEach((fn) => fn({ affectsConfiguration: (section) => name.startsWith(section) }));
}

class Position {
  constructor(line, character) { this.line = line; this.character = character; }
}
class Range {
  constructor(start, end) { this.start = start; this.end = end; }
}
class InlineCompletionItem {
  constructor(insertText, range) { this.insertText = insertText; this.range = range; }
}
const vscode = {
  Position, Range, InlineCompletionItem, ConfigurationTarget: { Global: 1 },
  workspace: {
    getConfiguration: (section) => ({
      get(key) {
        const name = `${section}.${key}`;
        assert.ok(name in declared, `${name} is not declared in package.json`);
        return name in settings ? settings[name] : declared[name].default;
      },
      async update(key, value) { settings[`${section}.${key}`] = value; },
    }),
    onDidChangeConfiguration(listener) {
      configurationListeners.push(listener);
      return { dispose() {} };
    },
  },
  languages: {
    registerInlineCompletionItemProvider(selector, provider) {
      registered.providers.push({ selector, provider });
      return { dispose() {} };
    },
  },
  commands: {
    registerCommand(name, fn) {
      registered.commands[name] = fn;
      return { dispose() {} };
    },
  },
  window: {
    createOutputChannel: () => ({ appendLine() {}, dispose() {} }),
    showInformationMessage: (m) => messages.push(['info', m]),
    showWarningMessage: (m) => messages.push(['warning', m]),
  },
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request === 'vscode' ? vscode : load.call(this, request, ...rest);
};

/** A TextDocument over `text` (offsets in UTF-16 units, as VS Code's). */
function documentOf(text, uri = 'file:///t.py') {
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') lineStarts.push(i + 1);
  const offsetAt = (p) => lineStarts[p.line] + p.character;
  return {
    uri: { toString: () => uri },
    offsetAt,
    positionAt(offset) {
      let line = 0;
      while (line + 1 < lineStarts.length && lineStarts[line + 1] <= offset) line++;
      return new Position(line, offset - lineStarts[line]);
    },
    getText: (range) => text.slice(offsetAt(range.start), offsetAt(range.end)),
    end() { return this.positionAt(text.length); },
  };
}

/** VS Code's CancellationTokenSource, as far as the provider uses it. */
function tokenSource() {
  const listeners = [];
  const token = {
    isCancellationRequested: false,
    onCancellationRequested(fn) { listeners.push(fn); return { dispose() {} }; },
  };
  return { token, cancel() { token.isCancellationRequested = true; listeners.forEach((fn) => fn()); } };
}

async function reference(prompt) {
  const socket = net.createConnection(SOCKET);
  socket.setEncoding('utf8');
  let data = '';
  socket.on('data', (chunk) => { data += chunk; });
  socket.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'complete', params: { prompt, maxTokens: 12, singleLine: true } }) + '\n');
  await new Promise((resolve) => socket.on('data', () => data.includes('\n') && resolve()));
  socket.end();
  return JSON.parse(data).result.text;
}

const extension = require('../src/extension');
const subscriptions = [];
settings['mambad.socketPath'] = SOCKET;
settings['mambad.debounceMs'] = 60;
settings['mambad.maxTokens'] = 12;
extension.activate({ subscriptions });
const provider = registered.providers[0].provider;
after(() => subscriptions.forEach((s) => s.dispose())); // closes the connection

test('the manifest declares the settings, commands and entry point the code uses', () => {
  for (const key of ['socketPath', 'debounceMs', 'singleLine', 'maxTokens']) assert.ok(`mambad.${key}` in declared, key);
  assert.ok(fs.existsSync(path.join(__dirname, '..', manifest.main)));
  assert.deepEqual(manifest.contributes.commands.map((c) => c.command).sort(), Object.keys(registered.commands).sort());
  assert.deepEqual(registered.providers[0].selector, { pattern: '**' });
  const source = fs.readFileSync(path.join(__dirname, '..', 'src', 'client.js'), 'utf8');
  assert.doesNotMatch(source, /require\(['"]vscode['"]\)/, 'client.js runs without VS Code');
});

test('the provider offers the daemon completion of the text before the cursor', async () => {
  const doc = documentOf('import os\ndef fibonacci(n):\n    return 1');
  const position = new Position(1, 'def fibonacci(n):'.length);
  const items = await provider.provideInlineCompletionItems(doc, position, {}, tokenSource().token);
  assert.equal(items.length, 1);
  assert.equal(items[0].insertText, await reference('import os\ndef fibonacci(n):'));
  assert.deepEqual(items[0].range, new Range(position, position));
});

test('calls cancelled by newer keystrokes give nothing; the last gives its suggestion', async () => {
  settings['mambad.debounceMs'] = 300;
  const calls = [];
  let source = null;
  for (const text of ['w', 'wh', 'whi', 'whil', 'while']) {
    if (source) source.cancel();
    source = tokenSource();
    const doc = documentOf(text);
    calls.push(provider.provideInlineCompletionItems(doc, doc.end(), {}, source.token));
    await new Promise((r) => setTimeout(r, 20));
  }
  const results = await Promise.all(calls);
  assert.deepEqual(results.slice(0, 4), [undefined, undefined, undefined, undefined]);
  assert.equal(results[4][0].insertText, await reference('while'));
  settings['mambad.debounceMs'] = 60;
});

test('mambad.status shows the daemon; an absent daemon is reported once', async () => {
  const text = await registered.commands['mambad.status']();
  assert.match(text, /^mambad: ready, model tiny-falcon-vocab-nf4, socket /);
  assert.deepEqual(messages.pop(), ['info', text]);
  setSetting('mambad.socketPath', '/nonexistent/mambad.sock');
  const doc = documentOf('x');
  assert.equal(await provider.provideInlineCompletionItems(doc, doc.end(), {}, tokenSource().token), undefined);
  assert.equal(await provider.provideInlineCompletionItems(doc, doc.end(), {}, tokenSource().token), undefined);
  assert.deepEqual(messages, [['warning', 'mambad: cannot connect to /nonexistent/mambad.sock: ENOENT']]);
  setSetting('mambad.socketPath', SOCKET);
  assert.equal((await provider.provideInlineCompletionItems(doc, doc.end(), {}, tokenSource().token))[0].insertText,
    await reference('x'));
});
