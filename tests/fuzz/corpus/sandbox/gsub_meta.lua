local t = setmetatable({}, {__index = function(t, k) return string.gsub(k, ".", t) end})
exports.f = function(s) return t[s] end