exports.f = function() return ("ab"):rep(1e9) end
return string.rep("x", 1 << 40)