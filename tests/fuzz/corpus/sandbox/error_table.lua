exports.f = function() error(setmetatable({}, {__tostring = function() error("inner") end})) end
error({code = 1})