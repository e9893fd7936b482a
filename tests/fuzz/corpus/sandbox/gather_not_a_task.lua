local f = load("x = 1") exports.f = function() return pcall(f) end
load(letta.gather"\27Lua<close>")