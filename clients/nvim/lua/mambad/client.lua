-- JSON-RPC 2.0 over the daemon's Unix socket (NDJSON framing), one persistent
-- connection made on first use and remade after a failure. Replies and progress
-- notifications are delivered through vim.schedule, so callbacks may use any API.
local uv = vim.loop

local M = {}

--- The socket to use: `explicit`, else $MAMBAD_SOCKET, else the first that exists of
--- $XDG_RUNTIME_DIR/mambad.sock, /tmp/mambad.sock, /run/mambad/mambad.sock.
function M.socket_path(explicit)
  if explicit and explicit ~= '' then
    return explicit
  end
  local env = os.getenv('MAMBAD_SOCKET')
  if env and env ~= '' then
    return env
  end
  local candidates = {}
  local runtime = os.getenv('XDG_RUNTIME_DIR')
  if runtime and runtime ~= '' then
    table.insert(candidates, runtime .. '/mambad.sock')
  end
  table.insert(candidates, '/tmp/mambad.sock')
  table.insert(candidates, '/run/mambad/mambad.sock')
  for _, path in ipairs(candidates) do
    if uv.fs_stat(path) then
      return path
    end
  end
  return candidates[1]
end

local Client = {}
Client.__index = Client

--- opts.socket: a path, or a function returning one (read at each connect);
--- opts.log(message): optional trace of traffic and state changes.
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    socket = opts.socket,
    log = opts.log or function() end,
    pipe = nil,
    state = 'closed', -- closed | connecting | open
    path = nil,
    next_id = 1,
    pending = {}, -- id -> { on_reply, on_progress }
    outbox = {}, -- lines written once connected
    buffer = '',
    connects = 0, -- successful connections so far
    last_error = nil,
  }, Client)
end

function Client:_fail_all(message)
  local pending = self.pending
  self.pending = {}
  self.outbox = {}
  for id, handlers in pairs(pending) do
    vim.schedule(function()
      handlers.on_reply({ code = -1, message = message, transport = true }, nil, id)
    end)
  end
end

function Client:_closed(message)
  if self.pipe and not self.pipe:is_closing() then
    self.pipe:close()
  end
  self.pipe = nil
  self.state = 'closed'
  self.buffer = ''
  self.last_error = message
  self.log('connection: ' .. message)
  self:_fail_all(message)
end

function Client:_dispatch(line)
  local ok, message = pcall(vim.json.decode, line)
  if not ok or type(message) ~= 'table' then
    self.log('bad message from the daemon: ' .. line:sub(1, 200))
    return
  end
  if message.method == 'complete/progress' then
    local params = message.params or {}
    local handlers = self.pending[params.id]
    if handlers and handlers.on_progress then
      handlers.on_progress(params)
    end
  elseif message.id ~= nil and message.id ~= vim.NIL then
    local handlers = self.pending[message.id]
    self.pending[message.id] = nil
    if handlers then
      local err = message.error
      if err == vim.NIL then
        err = nil
      end
      handlers.on_reply(err, err == nil and message.result or nil, message.id)
    end
  end
end

function Client:_on_read(err, chunk)
  if err or not chunk then
    vim.schedule(function()
      self:_closed(err and ('read failed: ' .. err) or 'the daemon closed the connection')
    end)
    return
  end
  self.buffer = self.buffer .. chunk
  local lines = {}
  while true do
    local nl = self.buffer:find('\n', 1, true)
    if not nl then
      break
    end
    table.insert(lines, self.buffer:sub(1, nl - 1))
    self.buffer = self.buffer:sub(nl + 1)
  end
  if #lines > 0 then
    vim.schedule(function()
      for _, line in ipairs(lines) do
        self:_dispatch(line)
      end
    end)
  end
end

function Client:_connect()
  local path = type(self.socket) == 'function' and self.socket() or M.socket_path(self.socket)
  self.path = path
  self.state = 'connecting'
  local pipe = uv.new_pipe(false)
  self.pipe = pipe
  pipe:connect(path, function(err)
    vim.schedule(function()
      if self.pipe ~= pipe then
        return
      end
      if err then
        self:_closed(('cannot connect to %s: %s'):format(path, err))
        return
      end
      self.state = 'open'
      self.connects = self.connects + 1
      self.last_error = nil
      self.log('connected to ' .. path)
      pipe:read_start(function(read_err, chunk)
        self:_on_read(read_err, chunk)
      end)
      local outbox = self.outbox
      self.outbox = {}
      for _, data in ipairs(outbox) do
        self:_write(data)
      end
    end)
  end)
end

function Client:_write(data)
  if self.state == 'open' then
    self.pipe:write(data, function(err)
      if err then
        vim.schedule(function()
          self:_closed('write failed: ' .. err)
        end)
      end
    end)
  else
    table.insert(self.outbox, data)
    if self.state == 'closed' then
      self:_connect()
    end
  end
end

function Client:_send(message)
  self:_write(vim.json.encode(message) .. '\n')
end

--- Sends a request; on_reply(err, result, id) runs once, with err = the JSON-RPC error
--- object or { code = -1, transport = true, message } when the connection failed.
--- on_progress(params) runs for each complete/progress of this request. Returns the id.
function Client:request(method, params, on_reply, on_progress)
  local id = self.next_id
  self.next_id = id + 1
  self.pending[id] = { on_reply = on_reply, on_progress = on_progress }
  self.log(('-> %s #%d'):format(method, id))
  self:_send({ jsonrpc = '2.0', id = id, method = method, params = params })
  return id
end

function Client:notify(method, params)
  self:_send({ jsonrpc = '2.0', method = method, params = params })
end

--- Asks the daemon to stop request `id`; its reply (-32800) still reaches on_reply.
function Client:cancel(id)
  if self.pending[id] then
    self.log(('-> $/cancelRequest #%d'):format(id))
    if self.state == 'open' or self.state == 'connecting' then
      self:notify('$/cancelRequest', { id = id })
    end
  end
end

function Client:close()
  if self.pipe then
    self:_closed('closed by the client')
  end
end

return M
