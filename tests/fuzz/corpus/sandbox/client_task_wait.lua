local t = letta.spawn(function() return client.health:check() end)
exports.main = function() return pcall(t.wait, t) end