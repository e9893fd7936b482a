local f = load("x = 1") exports.f = function() return pcall(f) end
load("\27Lua")