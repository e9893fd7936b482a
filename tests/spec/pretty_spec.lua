-- letta.pretty: how the REPL shows values.
local pretty = require "letta.pretty"
local json = require "letta.json"

describe("letta.pretty", function()
  it("sorts keys, numbers before strings", function()
    assert.equal('{ 1, 2, a = 1, b = "x" }', pretty.repr({ 1, 2, b = "x", a = 1 }))
  end)

  it("quotes keys that are not identifiers and escapes strings", function()
    assert.equal('{ ["a b"] = "line\\nnext" }', pretty.repr({ ["a b"] = "line\nnext" }))
  end)

  it("shows JSON null and empty arrays as such", function()
    assert.equal("{ tags = [], x = null }", pretty.repr(json.decode('{"x": null, "tags": []}')))
  end)

  it("limits depth and items", function()
    assert.equal("{ a = {...} }", pretty.repr({ a = { b = 1 } }, { depth = 1 }))
    local t = {}
    for i = 1, 5 do t[i] = i end
    assert.equal("{ 1, 2, ... (3 more) }", pretty.repr(t, { items = 2 }))
  end)

  it("breaks long or nested tables over lines", function()
    assert.equal("{\n  a = { 1 }\n}", pretty.repr({ a = { 1 } }))
  end)
end)
