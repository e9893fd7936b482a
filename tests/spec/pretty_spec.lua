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

  it("shows objects with __tostring as their summary, their fields with raw = true", function()
    local obj = setmetatable({ secret_part = { 1 } }, { __tostring = function() return "Thing (ok)" end })
    assert.equal("Thing (ok)", pretty.repr(obj))
    assert.equal("{ n = 1, thing = Thing (ok) }", pretty.repr({ thing = obj, n = 1 }))
    assert.equal("{\n  secret_part = { 1 }\n}", pretty.repr(obj, { raw = true }))
    local broken = setmetatable({ a = 1 }, { __tostring = function() error("no") end })
    assert.equal("{ a = 1 }", pretty.repr(broken))
  end)

  it("cuts the outer table at rows, nested ones at items", function()
    local t = {}
    for i = 1, 5 do t[i] = { i, i, i } end
    assert.equal("{\n  { 1, 1, 1 },\n  { 2, 2, 2 },\n  ... (3 more)\n}", pretty.repr(t, { rows = 2, items = 3 }))
  end)
end)
