-- Drawing a suggestion as ghost text (extmarks) and splitting it for partial accepts.
local api = vim.api

local M = {}

M.ns = api.nvim_create_namespace('mambad')
-- 'inline' virtual text pushes the rest of the line aside (Neovim 0.10+); before that
-- the first line is drawn with 'overlay' and the rest of the line is redrawn after it.
M.inline = vim.fn.has('nvim-0.10') == 1

--- How a line of suggestion text is drawn: tabs as spaces, other control characters as '?'.
function M.displayed(line)
  local tab = string.rep(' ', vim.bo.tabstop > 0 and vim.bo.tabstop or 8)
  return (line:gsub('\t', tab):gsub('[%z\1-\31\127]', '?'))
end

--- Draws suggestion `s` ({ text, row, col }) in `buf`: its first line at the cursor
--- (virt_text), the others below it (virt_lines).
function M.render(buf, s, hl)
  api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  local lines = vim.split(s.text, '\n', { plain = true })
  local line = api.nvim_buf_get_lines(buf, s.row - 1, s.row, false)[1] or ''
  local col = math.min(s.col, #line)
  local suffix = line:sub(col + 1)
  local opts = { hl_mode = 'combine', priority = 200 }
  local first = M.displayed(lines[1])
  if M.inline then
    opts.virt_text = { { first, hl } }
    opts.virt_text_pos = 'inline'
  else
    opts.virt_text_pos = 'overlay'
    if #lines == 1 then
      opts.virt_text = { { first, hl }, { suffix, 'Normal' } }
    else -- the rest of the line moves to the end of the last suggested line
      opts.virt_text = { { first .. string.rep(' ', vim.fn.strdisplaywidth(suffix)), hl } }
    end
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      local chunks = { { M.displayed(lines[i]), hl } }
      if i == #lines and not M.inline and suffix ~= '' then
        table.insert(chunks, { suffix, 'Normal' })
      end
      table.insert(opts.virt_lines, chunks)
    end
  end
  return api.nvim_buf_set_extmark(buf, M.ns, s.row - 1, col, opts)
end

--- The part of `text` that an accept of `kind` inserts:
--- 'all'; 'word': leading blanks and one word (or one other character);
--- 'line': up to the end of the line (when it starts with a newline: that and the next line).
function M.part(text, kind)
  if kind == 'word' then
    return text:match('^%s*[%w_\128-\255]+') or text:match('^%s*[^%s%w_\128-\255]') or text
  elseif kind == 'line' then
    local from = text:sub(1, 1) == '\n' and 2 or 1
    local nl = text:find('\n', from, true)
    return nl and text:sub(1, nl - 1) or text
  end
  return text
end

return M
