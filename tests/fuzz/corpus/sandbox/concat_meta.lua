local m = {} m.__concat = function(a, b) return setmetatable({}, m) end m.__tostring = function() return m end
exports.f = function() return setmetatable({}, m) .. "x" end