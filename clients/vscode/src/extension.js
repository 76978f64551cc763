'use strict';
// VS Code entry point: an InlineCompletionItemProvider backed by src/client.js.
// Accepting (Tab), accepting a word (Ctrl+Right) and dismissing (Escape) are VS Code's
// own inline-suggestion commands.
const vscode = require('vscode');
const { MambadClient, Suggester, defaultSocketPath } = require('./client');

function settings() {
  const c = vscode.workspace.getConfiguration('mambad');
  return {
    enabled: c.get('enabled', true),
    socketPath: c.get('socketPath', '') || defaultSocketPath(),
    debounceMs: c.get('debounceMs', 150),
    singleLine: c.get('singleLine', true),
    maxTokens: c.get('maxTokens', 48),
    temperature: c.get('temperature', 0),
    contextChars: c.get('contextChars', 6000),
    stop: c.get('stop', []),
  };
}

function activate(context) {
  const output = vscode.window.createOutputChannel('mambad');
  const client = new MambadClient({ socketPath: () => settings().socketPath, log: (line) => output.appendLine(line) });
  const suggester = new Suggester(client, settings);
  let reported = null;

  const provider = {
    async provideInlineCompletionItems(document, position, _context, token) {
      if (!settings().enabled) return undefined;
      const end = document.offsetAt(position);
      const start = Math.max(0, end - settings().contextChars - 1);
      const prefix = document.getText(new vscode.Range(document.positionAt(start), position));
      const controller = new AbortController();
      const subscription = token.onCancellationRequested(() => controller.abort());
      try {
        const text = await suggester.suggest(document.uri.toString(), prefix, controller.signal);
        const error = suggester.lastError;
        if (error && error.message !== reported) {
          reported = error.message;
          vscode.window.showWarningMessage(`mambad: ${error.message}`);
        } else if (!error) {
          reported = null;
        }
        if (!text || token.isCancellationRequested) return undefined;
        return [new vscode.InlineCompletionItem(text, new vscode.Range(position, position))];
      } finally {
        subscription.dispose();
      }
    },
  };

  context.subscriptions.push(
    output,
    vscode.languages.registerInlineCompletionItemProvider({ pattern: '**' }, provider),
    vscode.commands.registerCommand('mambad.status', async () => {
      try {
        const s = await client.request('status', undefined);
        const r = s.requests;
        const text = `mambad: ${s.state}, model ${s.model.name}, socket ${client.path}; requests ${r.active} active, `
          + `${r.queued} queued, ${r.completed} completed, ${r.cancelled} cancelled; cache ${s.cache.hits} hits, `
          + `${s.cache.misses} misses; this window: ${suggester.stats.requests} requests, ${suggester.stats.shown} shown`;
        vscode.window.showInformationMessage(text);
        return text;
      } catch (err) {
        vscode.window.showWarningMessage(`mambad: not reachable (${err.message})`);
        return undefined;
      }
    }),
    vscode.commands.registerCommand('mambad.toggle', () => {
      const c = vscode.workspace.getConfiguration('mambad');
      return c.update('enabled', !c.get('enabled', true), vscode.ConfigurationTarget.Global);
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('mambad.socketPath')) client.close(); // the next request connects anew
    }),
    { dispose: () => client.close() },
  );
  return { client, suggester, provider };
}

function deactivate() {}

module.exports = { activate, deactivate };
