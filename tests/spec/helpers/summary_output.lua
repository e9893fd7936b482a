-- busted output handler: TAP lines, then the one summary line tests/run.sh adds up.
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.TAP"(options)
  busted.subscribe({ "suite", "end" }, function()
    io.write(string.format("%d passed, %d failed\n", #handler.successes, #handler.failures + #handler.errors))
    io.flush()
    return nil, true
  end)
  return handler
end
