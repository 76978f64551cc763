-- A small test runner for headless Neovim 0.7+: each case runs in a coroutine that
-- yields to the main loop (so typed keys, timers and socket callbacks really run),
-- plus a blocking-style raw JSON-RPC connection for the reference requests.
local uv = vim.loop
local api = vim.api

local H = {}
H.socket = assert(os.getenv('MAMBAD_SOCKET'), 'MAMBAD_SOCKET is not set')

local co
local cases = {}
local failures = 0

local function out(line)
  io.stdout:write(line .. '\n')
  io.stdout:flush()
end
H.out = out

local function resume()
  local ok, err = coroutine.resume(co)
  if not ok then
    out('not ok - runner crashed: ' .. tostring(err))
    vim.cmd('cquit 1')
  end
end

--- Calls `fn` on the main loop after `ms` milliseconds: vim.defer_fn without its
--- vim.validate, which once failed under a loaded CI run of Neovim 0.7.2 with an
--- impossible message ("opt[true]: expected table, got number") for a valid call.
local function after(ms, fn)
  local timer = uv.new_timer()
  timer:start(ms, 0, vim.schedule_wrap(function()
    timer:close()
    fn()
  end))
end

--- Lets the main loop run for `ms` milliseconds (keys typed, timers, replies).
function H.sleep(ms)
  after(ms, resume)
  coroutine.yield()
end

local function now()
  return uv.hrtime() / 1e6
end
H.now = now

--- Waits until `condition()` is true; fails after `timeout` ms naming `what`.
function H.wait_for(what, condition, timeout)
  local deadline = now() + (timeout or 30000)
  while true do
    local value = condition()
    if value then
      return value
    end
    if now() > deadline then
      error('timed out waiting for ' .. what, 2)
    end
    H.sleep(5)
  end
end

function H.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(('%s: expected %s, got %s'):format(what or 'value', vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

function H.truthy(value, what)
  if not value then
    error((what or 'condition') .. ' does not hold', 2)
  end
  return value
end

--- Types `keys` as a user would (nvim_input: Neovim reads them as typed input once the
--- runner yields) and lets the main loop take them.
function H.type(keys)
  api.nvim_input(keys)
  H.sleep(20)
end

--- Types `keys`, then waits until the current line reads `line`.
function H.type_until(keys, line)
  H.type(keys)
  H.wait_for(('the line to read %q'):format(line), function()
    return api.nvim_get_current_line() == line
  end, 5000)
end

-- A connection of the test's own, independent of the plugin's client.
local Raw = {}
Raw.__index = Raw

function H.connect(path)
  local conn = setmetatable({ pipe = uv.new_pipe(false), buffer = '', lines = {}, next_id = 1000 }, Raw)
  conn.pipe:connect(path or H.socket, function(err)
    conn.error = err
    conn.connected = true
    if not err then
      conn.pipe:read_start(function(_, chunk)
        if not chunk then
          conn.closed = true
          return
        end
        conn.buffer = conn.buffer .. chunk
        while true do
          local nl = conn.buffer:find('\n', 1, true)
          if not nl then
            break
          end
          table.insert(conn.lines, conn.buffer:sub(1, nl - 1))
          conn.buffer = conn.buffer:sub(nl + 1)
        end
      end)
    end
  end)
  H.wait_for('connection', function()
    return conn.connected
  end)
  if conn.error then
    error('cannot connect to ' .. (path or H.socket) .. ': ' .. conn.error, 2)
  end
  return conn
end

function Raw:send(method, params, id)
  local message = { jsonrpc = '2.0', method = method, params = params }
  if id ~= false then
    id = id or self.next_id
    self.next_id = id + 1
    message.id = id
  end
  self.pipe:write(vim.json.encode(message) .. '\n')
  return id
end

--- The next message matching `predicate` (decoded), waiting for it.
function Raw:receive(predicate, what)
  return H.wait_for(what or 'a message', function()
    for i, line in ipairs(self.lines) do
      local message = vim.json.decode(line)
      if predicate(message) then
        table.remove(self.lines, i)
        return message
      end
    end
  end)
end

function Raw:reply(id)
  return self:receive(function(m)
    return m.id == id
  end, 'the reply to #' .. id)
end

function Raw:call(method, params)
  local reply = self:reply(self:send(method, params))
  if reply.error then
    error(('%s failed: %s'):format(method, vim.inspect(reply.error)), 2)
  end
  return reply.result
end

function Raw:close()
  self.pipe:close()
end

--- One request on a fresh connection.
function H.call(method, params, path)
  local conn = H.connect(path)
  local result = conn:call(method, params)
  conn:close()
  return result
end

function H.case(name, fn)
  table.insert(cases, { name = name, fn = fn })
end

--- Runs the cases in order, prints TAP-style lines, exits 0 only if all passed.
function H.run(before_each)
  co = coroutine.create(function()
    for _, case in ipairs(cases) do
      local start = now()
      local ok, err = pcall(function()
        if before_each then
          before_each()
        end
        case.fn()
      end)
      if ok then
        out(('ok - %s (%.0f ms)'):format(case.name, now() - start))
      else
        failures = failures + 1
        out(('not ok - %s: %s'):format(case.name, tostring(err)))
      end
    end
    out(('%d of %d cases passed'):format(#cases - failures, #cases))
    vim.cmd(failures == 0 and 'qall!' or 'cquit 1')
  end)
  after(tonumber(os.getenv('MAMBAD_TEST_TIMEOUT_MS') or '200000'), function()
    out('not ok - the whole run took too long')
    vim.cmd('cquit 1')
  end)
  vim.schedule(resume)
end

return H
