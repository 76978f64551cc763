-- Commands of mambad.nvim; suggestions start with require('mambad').setup({...}).
if vim.g.loaded_mambad then
  return
end
vim.g.loaded_mambad = true

local command = vim.api.nvim_create_user_command
command('MambadStatus', function()
  require('mambad').status()
end, { desc = "mambad: the daemon's state and counters" })
command('MambadEnable', function()
  require('mambad').enable()
end, { desc = 'mambad: show suggestions' })
command('MambadDisable', function()
  require('mambad').disable()
end, { desc = 'mambad: stop suggesting' })
command('MambadToggle', function()
  require('mambad').toggle()
end, { desc = 'mambad: toggle suggestions' })
