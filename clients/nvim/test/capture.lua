-- Prints what a user sees after typing into a buffer: the buffer's lines with the ghost
-- text (extmarks) drawn in place, marked ‹like this›. Used for the README's capture:
--   MAMBAD_SOCKET=... MAMBAD_TYPE='def fibonacci(n):' nvim --headless --clean \
--     --cmd 'set rtp^=clients/nvim' -c 'luafile clients/nvim/test/capture.lua'
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local mambad = require('mambad')
local ghost = require('mambad.ghost')
vim.o.showmode = false

H.case('capture', function()
  mambad.setup({ socket = H.socket, single_line = os.getenv('MAMBAD_SINGLE_LINE') ~= '0', max_tokens = 16 })
  local typed = os.getenv('MAMBAD_TYPE') or 'def fibonacci(n):'
  H.type('i' .. typed:gsub('<', '<lt>'):gsub('\n', '<CR>'))
  H.wait_for('a suggestion', function()
    local s = mambad.suggestion()
    return s and s.done
  end)
  local screen = api.nvim_buf_get_lines(0, 0, -1, false)
  local mark = api.nvim_buf_get_extmarks(0, ghost.ns, 0, -1, { details = true })[1]
  local row, col, details = mark[2] + 1, mark[3], mark[4]
  local line = screen[row]
  screen[row] = line:sub(1, col) .. '‹' .. details.virt_text[1][1] .. '›' .. line:sub(col + 1)
  for i, chunks in ipairs(details.virt_lines or {}) do
    table.insert(screen, row + i, '‹' .. chunks[1][1] .. '›')
  end
  H.out('$ nvim  # typed: i' .. vim.inspect(typed) .. ', waited ' .. mambad.config.debounce_ms .. ' ms')
  for _, l in ipairs(screen) do
    H.out(l)
  end
  H.out('-- INSERT --    (‹…› = ghost text, highlight MambadSuggestion; <Tab> accepts)')
end)
H.run()
