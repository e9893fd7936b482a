local co = coroutine.wrap(function(...) while true do coroutine.yield(...) end end)
for i = 1, 1000 do co(i) end
exports.tick = function() return coroutine.running() end