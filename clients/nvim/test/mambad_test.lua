-- mambad.nvim against a real daemon ($MAMBAD_SOCKET; started with --max-active 1 so the
-- test can keep a request queued). Run (Neovim 0.7+):
--   nvim --headless --clean --cmd 'set rtp^=clients/nvim' -c 'luafile clients/nvim/test/mambad_test.lua'
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local mambad = require('mambad')
local ghost = require('mambad.ghost')

vim.o.showmode = false

local base = { socket = H.socket, debounce_ms = 60, max_tokens = 12, single_line = true }

local function setup(overrides)
  mambad.setup(vim.tbl_extend('force', base, overrides or {}))
end

--- What the daemon answers for `prompt`, asked by the test itself.
local function reference(prompt, max_tokens, single_line)
  local result = H.call('complete', {
    prompt = prompt,
    maxTokens = max_tokens or base.max_tokens,
    singleLine = single_line ~= false,
    temperature = 0,
  })
  H.truthy(result.text ~= '', 'the daemon completes ' .. vim.inspect(prompt))
  return result.text
end

local function wait_suggestion(what)
  return H.wait_for(what or 'a finished suggestion', function()
    local s = mambad.suggestion()
    return s and s.done and s
  end)
end

--- The ghost text as drawn: the extmark's first chunk and its virtual lines.
local function drawn()
  local marks = api.nvim_buf_get_extmarks(0, ghost.ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  H.eq(1, #marks, 'one extmark')
  local details = marks[1][4]
  local lines = { details.virt_text[1][1] }
  for _, chunks in ipairs(details.virt_lines or {}) do
    table.insert(lines, chunks[1][1])
  end
  return { row = marks[1][2], col = marks[1][3], lines = lines }
end

local function displayed(text)
  return vim.tbl_map(ghost.displayed, vim.split(text, '\n', { plain = true }))
end

local function fresh_buffer()
  H.type('<Esc>')
  vim.cmd('enew!')
  H.eq('', vim.bo.buftype, 'a normal buffer')
end

H.case('ghost text is the completion of the text before the cursor; Tab accepts it', function()
  setup()
  local typed = 'def fibonacci(n):'
  H.type_until('i' .. typed, typed)
  local s = wait_suggestion()
  local expected = reference(typed)
  H.eq(expected, s.text, 'suggestion')
  H.eq({ row = 0, col = #typed, lines = displayed(expected) }, drawn(), 'extmark')
  H.type_until('<Tab>', typed .. expected)
  H.eq({ 1, #typed + #expected }, api.nvim_win_get_cursor(0), 'cursor after the accepted text')
  -- typing on (the accept was an edit too) asks for the continuation
  H.eq(reference(typed .. expected), wait_suggestion('the next suggestion').text, 'the next suggestion')
end)

H.case('the prompt is the buffer before the cursor, bounded by context_lines', function()
  setup({ context_lines = 2 })
  api.nvim_buf_set_lines(0, 0, -1, false, { 'line one', 'line two', 'line three', 'line four', 'tail' })
  api.nvim_win_set_cursor(0, { 4, 4 })
  H.type('i')
  H.type_until('X', 'lineX four')
  local s = wait_suggestion()
  H.eq('line two\nline three\nlineX', mambad.prefix(0, 4, 5), 'prefix')
  H.eq(reference('line two\nline three\nlineX'), s.text, 'suggestion for the bounded prefix')
  mambad.config.context_bytes = 7
  H.eq('e\nlineX', mambad.prefix(0, 4, 5), 'prefix bounded in bytes')
  api.nvim_buf_set_lines(0, 0, -1, false, { 'crêpe' })
  mambad.config.context_bytes = 3 -- the last 3 bytes start inside the 2-byte ê
  H.eq('pe', mambad.prefix(0, 1, 6), 'never starts inside a UTF-8 character')
end)

H.case('multi-line: virtual lines, then accept line, accept word, accept all', function()
  setup({ single_line = false, max_tokens = 16 })
  api.nvim_buf_set_lines(0, 0, -1, false, { 'def fibonacci(n):', '   ' })
  api.nvim_win_set_cursor(0, { 2, 3 })
  H.type('A')
  H.type_until(' ', '    ')
  local s = wait_suggestion()
  local prompt = 'def fibonacci(n):\n    '
  local expected = reference(prompt, 16, false)
  H.eq(expected, s.text, 'suggestion')
  H.truthy(expected:find('\n'), 'a multi-line completion')
  H.eq(displayed(expected), drawn().lines, 'first line and virtual lines')

  local function buffer_now(inserted)
    return vim.split('def fibonacci(n):\n    ' .. inserted, '\n', { plain = true })
  end
  local accepted = ghost.part(expected, 'line')
  H.type('<M-Down>')
  H.wait_for('accept line', function()
    return vim.deep_equal(api.nvim_buf_get_lines(0, 0, -1, false), buffer_now(accepted))
  end, 5000)
  H.eq(expected:sub(#accepted + 1), mambad.suggestion().text, 'the rest is still suggested')
  H.eq(displayed(expected:sub(#accepted + 1)), drawn().lines, 'the rest is drawn')

  local word = ghost.part(expected:sub(#accepted + 1), 'word')
  H.truthy(word:match('%w'), 'a word: ' .. vim.inspect(word))
  accepted = accepted .. word
  H.type('<M-Right>')
  H.wait_for('accept word', function()
    return vim.deep_equal(api.nvim_buf_get_lines(0, 0, -1, false), buffer_now(accepted))
  end, 5000)
  H.eq(expected:sub(#accepted + 1), mambad.suggestion().text, 'the rest after the word')

  H.type('<Tab>')
  H.wait_for('accept all', function()
    return vim.deep_equal(api.nvim_buf_get_lines(0, 0, -1, false), buffer_now(expected))
  end, 5000)
  local lines = buffer_now(expected)
  H.eq({ #lines, #lines[#lines] }, api.nvim_win_get_cursor(0), 'cursor at the end')
end)

H.case('dismiss, leaving insert mode and moving the cursor clear the ghost text; Tab without one is a Tab', function()
  setup()
  H.type_until('ihello', 'hello')
  wait_suggestion()
  H.type('<C-]>')
  H.wait_for('dismissed', function()
    return drawn() == nil and mambad.suggestion() == nil
  end, 5000)
  H.eq('hello', api.nvim_get_current_line(), 'dismiss inserts nothing')
  H.type_until('!', 'hello!')
  wait_suggestion()
  mambad.config.debounce_ms = 100000
  H.type('<Left>')
  H.wait_for('cleared on cursor move', function()
    return drawn() == nil and mambad.suggestion() == nil
  end, 5000)
  mambad.request()
  H.eq(reference('hello'), wait_suggestion('a suggestion at the new position').text, 'for the text before the cursor')
  H.type('<Esc>')
  H.wait_for('cleared on InsertLeave', function()
    return drawn() == nil
  end, 5000)
  H.type('A')
  H.type_until('<Tab>', 'hello!\t')
end)

H.case('keystrokes within the debounce send one request, for the last prefix', function()
  setup({ debounce_ms = 400 })
  local before = vim.deepcopy(mambad.stats)
  H.type('i')
  for _, ch in ipairs({ 'w', 'h', 'i', 'l', 'e' }) do
    api.nvim_input(ch)
    H.sleep(25)
  end
  H.wait_for('typed', function()
    return api.nvim_get_current_line() == 'while'
  end, 5000)
  local s = wait_suggestion()
  H.eq(reference('while'), s.text, 'suggestion for the last prefix')
  H.eq(before.requests + 1, mambad.stats.requests, 'one request')
  H.eq(before.shown + 1, mambad.stats.shown, 'one suggestion shown')
end)

local function status()
  return H.call('status')
end

local function logged(line)
  return vim.tbl_contains(mambad.log, line)
end

H.case('typing while a request is queued cancels it; its -32800 is ignored and only the last prefix is shown', function()
  setup({ debounce_ms = 60 })
  -- the daemon admits one request at a time (--max-active 1): hold it with a long one
  local blocker = H.connect()
  local blocking = blocker:send('complete', { tokens = { 1, 2, 3 }, maxTokens = 8000, stream = true, cache = false })
  blocker:receive(function(m)
    return m.method == 'complete/progress'
  end, 'the blocker running')
  local before, stats = status().requests, vim.deepcopy(mambad.stats)
  H.type_until('iabc', 'abc')
  H.wait_for('the request for "abc" queued in the daemon', function()
    return mambad.stats.requests == stats.requests + 1 and status().requests.queued == 1
  end)
  local first = mambad.stats.requests
  local first_id = mambad.client().next_id - 1
  H.type_until('d', 'abcd')
  H.truthy(logged(('-> $/cancelRequest #%d'):format(first_id)), 'the client sent $/cancelRequest')
  H.wait_for('the -32800 reply for "abc"', function()
    return logged(('<- #%d cancelled'):format(first_id))
  end)
  H.wait_for('the request for "abcd" queued', function()
    return mambad.stats.requests == first + 1 and status().requests.queued == 1
  end)
  H.eq(nil, mambad.suggestion(), 'nothing shown while queued')
  blocker:send('$/cancelRequest', { id = blocking }, false)
  H.eq(-32800, blocker:reply(blocking).error.code, 'the blocker cancelled')
  blocker:close()
  local s = wait_suggestion()
  H.eq(reference('abcd'), s.text, 'the suggestion is for the last prefix')
  local after = status().requests
  H.eq(before.cancelled + 2, after.cancelled, "the daemon's cancelled counter (abc and the blocker)")
  H.eq(stats.cancelled_replies + 1, mambad.stats.cancelled_replies, 'one cancelled reply, ignored')
  H.eq(stats.shown + 1, mambad.stats.shown, 'only the last prefix was shown')
end)

H.case('typing while a completion is streaming stops it and drops its partial ghost text', function()
  setup({ debounce_ms = 300, max_tokens = 4000, single_line = false })
  local before, stats = status().requests, vim.deepcopy(mambad.stats)
  H.type_until('ifor', 'for')
  local partial = H.wait_for('part of the long completion on screen', function()
    local s = mambad.suggestion()
    return s and s.text ~= '' and drawn() and s
  end)
  H.truthy(not partial.done, 'still streaming')
  local long_id = mambad.client().next_id - 1
  mambad.config.max_tokens = 12 -- the next request is a short one
  H.type('m')
  H.eq(nil, drawn(), 'the old ghost text is gone at the keystroke')
  H.eq(nil, mambad.suggestion(), 'no suggestion for the old prefix')
  local s = wait_suggestion()
  H.eq(api.nvim_get_current_line(), 'form')
  H.eq(reference('form', 12, false), s.text, 'the suggestion is for the last prefix')
  H.truthy(logged(('<- #%d cancelled'):format(long_id)), 'the long request answered -32800')
  local after = status().requests
  H.eq(before.cancelled + 1, after.cancelled, "the daemon's cancelled counter")
  H.eq(stats.shown + 1, mambad.stats.shown, 'one finished suggestion shown')
end)

H.case(':MambadStatus shows the daemon state and counters', function()
  setup()
  vim.cmd('MambadStatus')
  local text = H.wait_for('the status message', function()
    local messages = vim.fn.execute('messages')
    return messages:match('mambad: ready, model tiny%-falcon%-vocab%-nf4[^\n]*')
  end, 5000)
  H.truthy(text:find('socket ' .. H.socket, 1, true), 'names the socket: ' .. text)
  H.truthy(text:find('%d+ completed'), 'has counters: ' .. text)
end)

--- Starts a daemon of the test's own on `path`; returns { job, exit } once it answers.
local function start_daemon(path)
  local daemon = {}
  daemon.job = vim.fn.jobstart({
    assert(os.getenv('MAMBAD_BIN'), 'MAMBAD_BIN is not set'), 'serve', '--model',
    assert(os.getenv('MAMBAD_MODEL'), 'MAMBAD_MODEL is not set'), '--socket', path, '--precision', 'exact',
  }, {
    env = { MAMBAD_THREADS = '1' },
    on_exit = function(_, code)
      daemon.exit = code
    end,
  })
  H.truthy(daemon.job > 0, 'mambad started')
  H.wait_for('the daemon on ' .. path, function()
    local ok, result = pcall(H.call, 'status', nil, path)
    return ok and result.state == 'ready'
  end)
  return daemon
end

local function stop_daemon(daemon)
  vim.fn.jobstop(daemon.job) -- SIGTERM
  H.wait_for('the daemon to exit', function()
    return daemon.exit ~= nil
  end)
  H.eq(0, daemon.exit, 'the daemon exits 0 after SIGTERM')
end

H.case('the connection is remade after the daemon restarts; failures are reported once', function()
  local path = vim.fn.tempname() .. '.sock'
  local daemon = start_daemon(path)
  setup({ socket = path })
  H.type_until('ifoo', 'foo')
  local expected = wait_suggestion().text
  H.eq(1, mambad.client().connects, 'connected once')
  stop_daemon(daemon)
  local errors = mambad.stats.errors
  H.type_until('!', 'foo!')
  H.wait_for('the failure noticed', function()
    return mambad.stats.errors > errors
  end)
  H.eq(nil, mambad.suggestion(), 'no suggestion without a daemon')
  local reported = vim.fn.execute('messages')
  H.truthy(reported:find('mambad: cannot connect to ' .. path, 1, true) or reported:find('mambad: the daemon closed', 1, true),
    'the user is told: ' .. reported)
  H.type_until('?', 'foo!?')
  H.wait_for('the second failure', function()
    return mambad.stats.errors > errors + 1
  end)
  local _, count = vim.fn.execute('messages'):gsub('mambad: cannot connect', '')
  H.truthy(count <= 1, 'a repeated failure is not repeated on screen')
  daemon = start_daemon(path)
  H.type_until('<BS><BS>', 'foo')
  H.eq(expected, wait_suggestion('a suggestion from the restarted daemon').text, 'same suggestion after the restart')
  H.eq(2, mambad.client().connects, 'reconnected')
  stop_daemon(daemon)
end)

H.run(fresh_buffer)
