letta.spawn(function() letta.sleep(0.001) error(setmetatable({}, {__tostring = error})) end)
exports.tick = function() return "ok" end