-- mambad.nvim: inline (ghost text) completions from the mambad daemon.
-- Works on Neovim 0.7 and later. See clients/nvim/README.md.
local api = vim.api
local uv = vim.loop
local rpc = require('mambad.client')
local ghost = require('mambad.ghost')

local M = {}

local defaults = {
  socket = nil, -- nil: $MAMBAD_SOCKET, $XDG_RUNTIME_DIR/mambad.sock, /tmp/mambad.sock, /run/mambad/mambad.sock
  enabled = true,
  debounce_ms = 150, -- quiet time after the last keystroke before asking
  max_tokens = 48,
  temperature = 0,
  single_line = true, -- false: multi-line suggestions (shown with virtual lines)
  stop = {}, -- extra stop strings
  deadline_ms = nil, -- ask the daemon to give up after this long
  stream = true, -- show the suggestion as it is generated
  context_lines = 200, -- the prompt is at most this many lines before the cursor...
  context_bytes = 6000, -- ...and at most this many bytes
  filetypes = { ['*'] = true, TelescopePrompt = false, ['neo-tree'] = false }, -- false disables
  keys = { -- insert-mode keys, each may be false; a key with no suggestion shown keeps its own meaning
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-Down>',
    dismiss = '<C-]>',
  },
  hl_group = 'MambadSuggestion', -- linked to Comment unless defined
}

M.config = vim.deepcopy(defaults)
M.enabled = true
--- Counters, for :MambadStatus and tests.
M.stats = { requests = 0, cancels = 0, cancelled_replies = 0, stale_replies = 0, shown = 0, errors = 0 }
--- The last events (requests, cancels, replies), newest last.
M.log = {}

local buffers = {} -- bufnr -> { inflight, suggestion, seen, expect }
local timer = nil
local client = nil
local mapped = {}
local reported = nil -- last connection error told to the user

local function trace(message)
  table.insert(M.log, message)
  if #M.log > 200 then
    table.remove(M.log, 1)
  end
end

local function get_client()
  if not client then
    client = rpc.new({
      socket = function()
        return rpc.socket_path(M.config.socket)
      end,
      log = trace,
    })
  end
  return client
end
M.client = get_client

local function state(buf)
  buffers[buf] = buffers[buf] or {}
  return buffers[buf]
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

--- Where the cursor is and what the buffer holds: a key that changes with either.
local function position(buf)
  local cursor = api.nvim_win_get_cursor(0)
  return { tick = api.nvim_buf_get_changedtick(buf), row = cursor[1], col = cursor[2] }
end

local function same(a, b)
  return a and b and a.tick == b.tick and a.row == b.row and a.col == b.col
end

local function clear(buf)
  local st = buffers[buf]
  if st then
    st.suggestion = nil
  end
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, ghost.ns, 0, -1)
  end
end

local function cancel_inflight(st)
  if st.inflight then
    M.stats.cancels = M.stats.cancels + 1
    get_client():cancel(st.inflight.id)
    st.inflight = nil
  end
end

local function enabled_for(buf)
  if not M.enabled or vim.b[buf].mambad_enabled == false or vim.bo[buf].buftype ~= '' then
    return false
  end
  local by_type = M.config.filetypes[vim.bo[buf].filetype]
  if by_type == nil then
    by_type = M.config.filetypes['*']
  end
  return by_type ~= false
end

--- The text before the cursor: at most context_lines lines and context_bytes bytes,
--- never starting inside a UTF-8 character.
function M.prefix(buf, row, col)
  local first = math.max(0, row - 1 - M.config.context_lines)
  local lines = api.nvim_buf_get_lines(buf, first, row, false)
  lines[#lines] = (lines[#lines] or ''):sub(1, col)
  local text = table.concat(lines, '\n')
  if #text > M.config.context_bytes then
    local start = #text - M.config.context_bytes + 1
    while start <= #text do
      local byte = text:byte(start)
      if byte < 0x80 or byte >= 0xC0 then
        break
      end
      start = start + 1
    end
    text = text:sub(start)
  end
  return text
end

local function show(buf, at, text, done)
  if text == '' then
    clear(buf)
    return
  end
  local st = state(buf)
  st.suggestion = { text = text, row = at.row, col = at.col, tick = at.tick, done = done }
  ghost.render(buf, st.suggestion, M.config.hl_group)
  if done then
    M.stats.shown = M.stats.shown + 1
  end
end

local function report(err)
  M.stats.errors = M.stats.errors + 1
  local message = err.transport and err.message or ('daemon error %s: %s'):format(tostring(err.code), tostring(err.message))
  trace('error: ' .. message)
  if message ~= reported then
    reported = message
    vim.notify('mambad: ' .. message, vim.log.levels.WARN)
  end
end

--- Sends the completion request for the cursor's position in `buf`.
function M.request(buf)
  buf = buf or api.nvim_get_current_buf()
  if buf ~= api.nvim_get_current_buf() or not in_insert_mode() or not enabled_for(buf) then
    return
  end
  local st = state(buf)
  cancel_inflight(st)
  local at = position(buf)
  local params = {
    prompt = M.prefix(buf, at.row, at.col),
    maxTokens = M.config.max_tokens,
    temperature = M.config.temperature,
    singleLine = M.config.single_line,
    stream = M.config.stream,
    session = ('nvim:%d:%d'):format(vim.fn.getpid(), buf),
  }
  if M.config.stop and #M.config.stop > 0 then
    params.stop = M.config.stop
  end
  if M.config.deadline_ms then
    params.deadlineMs = M.config.deadline_ms
  end
  local request = { tick = at.tick, row = at.row, col = at.col, text = '', prompt = params.prompt }
  M.stats.requests = M.stats.requests + 1
  local function current()
    return api.nvim_get_current_buf() == buf and in_insert_mode() and same(position(buf), at)
  end
  request.id = get_client():request('complete', params, function(err, result, id)
    local mine = st.inflight ~= nil and st.inflight.id == id
    if mine then
      st.inflight = nil
    end
    if err then
      if err.code == -32800 then
        M.stats.cancelled_replies = M.stats.cancelled_replies + 1
        trace(('<- #%d cancelled'):format(id))
      else
        report(err)
      end
      return
    end
    reported = nil
    if mine and current() then
      trace(('<- #%d %q'):format(id, result.text))
      show(buf, at, result.text, true)
    else -- finished before its cancellation arrived, or the cursor moved since
      M.stats.stale_replies = M.stats.stale_replies + 1
      trace(('<- #%d stale, ignored'):format(id))
    end
  end, function(progress)
    if st.inflight == request and current() then
      request.text = request.text .. (progress.text or '')
      show(buf, at, request.text, false)
    end
  end)
  st.inflight = request
end

local function debounce(buf)
  if not timer then
    timer = uv.new_timer()
  end
  timer:stop()
  timer:start(M.config.debounce_ms, 0, function()
    vim.schedule(function()
      M.request(buf)
    end)
  end)
end

--- TextChangedI / CursorMovedI: whatever was shown or asked for is out of date.
local function on_change(buf)
  local st = state(buf)
  local at = position(buf)
  if same(at, st.seen) then
    return -- the second event of the same keystroke
  end
  st.seen = at
  if same(at, st.expect) then
    st.expect = nil
    if st.suggestion then
      return -- our own partial acceptance: the rest stays shown
    end
  end
  cancel_inflight(st)
  clear(buf)
  if enabled_for(buf) then
    debounce(buf)
  end
end

--- Drops the suggestion and any request in flight.
function M.dismiss(buf)
  buf = buf or api.nvim_get_current_buf()
  if timer then
    timer:stop()
  end
  local st = state(buf)
  cancel_inflight(st)
  clear(buf)
end

--- The suggestion shown at the cursor, if any: { text, row, col, tick, done }.
function M.suggestion(buf)
  buf = buf or api.nvim_get_current_buf()
  local s = buffers[buf] and buffers[buf].suggestion
  if s and same(s, position(buf)) then
    return s
  end
  return nil
end

--- Inserts all of the suggestion ('all'), its next word ('word') or the rest of its
--- line ('line'); what is left stays shown. Returns false when nothing was shown.
function M.accept(kind)
  local buf = api.nvim_get_current_buf()
  local s = M.suggestion(buf)
  if not s then
    return false
  end
  local part = ghost.part(s.text, kind or 'all')
  local rest = s.text:sub(#part + 1)
  local lines = vim.split(part, '\n', { plain = true })
  api.nvim_buf_set_text(buf, s.row - 1, s.col, s.row - 1, s.col, lines)
  local row = s.row + #lines - 1
  local col = #lines == 1 and s.col + #part or #lines[#lines]
  api.nvim_win_set_cursor(0, { row, col })
  local st = state(buf)
  st.expect = position(buf)
  clear(buf)
  if rest ~= '' then
    show(buf, st.expect, rest, s.done)
  end
  return true
end

local function accept_key(kind, key)
  return function()
    if M.suggestion() then
      return ('<Cmd>lua require("mambad").accept(%q)<CR>'):format(kind)
    end
    return key
  end
end

local function map_keys()
  for _, key in ipairs(mapped) do
    pcall(vim.keymap.del, 'i', key)
  end
  mapped = {}
  local keys = M.config.keys or {}
  local actions = {
    accept = accept_key('all', keys.accept),
    accept_word = accept_key('word', keys.accept_word),
    accept_line = accept_key('line', keys.accept_line),
    dismiss = function()
      if M.suggestion() or (buffers[api.nvim_get_current_buf()] or {}).inflight then
        return '<Cmd>lua require("mambad").dismiss()<CR>'
      end
      return keys.dismiss
    end,
  }
  for name, action in pairs(actions) do
    if keys[name] then
      vim.keymap.set('i', keys[name], action, { expr = true, silent = true, desc = 'mambad: ' .. name })
      table.insert(mapped, keys[name])
    end
  end
end

--- Shows the daemon's status (or the reason it cannot be reached) in the message area.
function M.status(callback)
  local c = get_client()
  c:request('status', nil, function(err, result)
    local text
    if err then
      text = ('mambad: not reachable (%s)'):format(err.message or tostring(err.code))
    else
      local r, cache, model = result.requests or {}, result.cache or {}, result.model or {}
      text = ('mambad: %s, model %s, socket %s; requests %d active, %d queued, %d completed, %d cancelled; '
        .. 'cache %d hits, %d misses; this editor: %d requests, %d cancelled, %d shown'):format(
        result.state, tostring(model.name), c.path, r.active or 0, r.queued or 0, r.completed or 0,
        r.cancelled or 0, cache.hits or 0, cache.misses or 0, M.stats.requests, M.stats.cancels, M.stats.shown)
    end
    api.nvim_echo({ { text } }, true, {})
    if callback then
      callback(err, result, text)
    end
  end)
end

function M.enable()
  M.enabled = true
end

function M.disable()
  M.enabled = false
  for buf in pairs(buffers) do
    M.dismiss(buf)
  end
end

function M.toggle()
  if M.enabled then
    M.disable()
  else
    M.enable()
  end
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  M.enabled = M.config.enabled
  if client then
    client:close()
    client = nil
  end
  vim.cmd('highlight default link MambadSuggestion Comment')
  local group = api.nvim_create_augroup('mambad', { clear = true })
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP', 'CursorMovedI' }, {
    group = group,
    callback = function(args)
      on_change(args.buf)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    callback = function(args)
      M.dismiss(args.buf)
      state(args.buf).seen = nil
    end,
  })
  api.nvim_create_autocmd('BufUnload', {
    group = group,
    callback = function(args)
      buffers[args.buf] = nil
    end,
  })
  map_keys()
end

return M
