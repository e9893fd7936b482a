local ok, e = pcall(client.health.check, client.health)
exports.f = function() return tostring(e) end
letta.spawn(function() return client.agents:list() end)