local function r(n) return r(n + 1) + 1 end
exports.f = function() return r(1) end
r(1)