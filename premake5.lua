-- Build of lettash. Works with premake5 and with Debian's premake4:
--   premake4 --file=premake5.lua gmake && make -C build config=release
-- Configurations: release (bin/), debug (bin/debug/), asan (bin/asan/: AddressSanitizer + UBSan).
-- Libraries come from pkg-config: Lua 5.4 and lua-cjson are linked statically (as Debian's lua5.4
-- is), LMDB dynamically; libcurl is loaded on first use (see src/lh_curl.h).

local is_premake4 = _PREMAKE_VERSION and _PREMAKE_VERSION:match("^4") ~= nil
if not workspace then workspace = solution end

-- `filter "configurations:x"` in premake5, `configuration "x"` in premake4.
local function when(cfg)
  if is_premake4 then configuration(cfg) else filter("configurations:" .. cfg) end
end
local function always()
  if is_premake4 then configuration("*") else filter({}) end
end
local function optimize_on()
  if is_premake4 then flags { "OptimizeSpeed" } else optimize "Speed" end
end
local function symbols_on()
  if is_premake4 then flags { "Symbols" } else symbols "On" end
end

local function pkg(args)
  local p = io.popen("pkg-config " .. args .. " 2>/dev/null")
  local out = p:read("*a") or ""
  p:close()
  return (out:gsub("%s+$", ""))
end

local function split(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

local lua_cflags = split(pkg("--cflags lua5.4"))
local curl_cflags = split(pkg("--cflags libcurl"))
local lmdb_libs = pkg("--libs lmdb")
local has_readline = os.isfile("/usr/include/readline/readline.h")

-- Embed the Lua library now, so the generated file exists for the build files; the library
-- project regenerates it before each build (rewriting it only when lua/ changed).
local embed = dofile("src/embed.lua")
os.mkdir("build/gen")
local lua_files = {}
for _, f in ipairs(os.matchfiles("lua/letta/**.lua")) do lua_files[#lua_files + 1] = f:gsub("^lua/", "") end
embed.generate("lua", lua_files, "build/gen/lh_embedded.c")

workspace "lettash"
  configurations { "release", "debug", "asan" }
  location "build"
  language "C"

  buildoptions { "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fPIC" }
  buildoptions(lua_cflags)
  buildoptions(curl_cflags)
  includedirs { "src", "build/gen" }

  when "release"
    optimize_on()
    symbols_on()
    defines { "NDEBUG" }
    targetdir "bin"
    objdir "build/obj/release"
  when "debug"
    symbols_on()
    targetdir "bin/debug"
    objdir "build/obj/debug"
  when "asan"
    symbols_on()
    buildoptions { "-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                   "-fno-sanitize-recover=undefined" }
    linkoptions { "-fsanitize=address,undefined" }
    targetdir "bin/asan"
    objdir "build/obj/asan"
  always()

local runtime_files = { "src/lh_runtime.c", "src/lh_host.c", "src/lh_json.c", "src/lh_sse.c", "src/lh_headers.c", "src/lh_curl.c",
                        "src/lh_http.c", "src/lh_lmdb.c", "src/lh_util.c", "build/gen/lh_embedded.c" }

-- The runtime: everything but main (src/lettash.h is its API). Hosts link it statically
-- (bin/liblettash.a, with Lua, cjson and LMDB after it) or use the shared one below.
project "lettash_rt"
  kind "StaticLib"
  targetname "lettash"
  files(runtime_files)
  prebuildcommands { "cd .. && lua5.4 src/embed.lua lua build/gen/lh_embedded.c" }

-- bin/liblettash.so: the runtime for hosts that link it dynamically. Debian's static Lua and
-- cjson are not position-independent, so this one depends on their shared libraries instead.
project "lettash_shared"
  kind "SharedLib"
  targetname "lettash"
  files(runtime_files)
  -- in lib/, so that our own programs' -llettash finds the static library in bin/
  when "release"  targetdir "bin/lib"
  when "debug"    targetdir "bin/debug/lib"
  when "asan"     targetdir "bin/asan/lib"
  always()
  linkoptions { "-llua5.4", "-llua5.4-cjson", lmdb_libs, "-ldl", "-lm" }

-- bin/letta.so: `require "letta"` from stock lua5.4. Lua's API comes from the interpreter.
project "letta_module"
  kind "SharedLib"
  targetname "letta"
  targetprefix ""
  files(runtime_files)
  linkoptions { "-llua5.4-cjson", lmdb_libs, "-ldl" }

-- What every program linking the runtime needs after it: static Lua and cjson, LMDB, dl, m.
-- -Wl,-E exports Lua's API so that C modules loaded by require (busted's, lfs...) find it.
-- They go through `links` so that they follow the runtime library on the link line.
local lmdb_links = {}
for _, flag in ipairs(split(lmdb_libs)) do lmdb_links[#lmdb_links + 1] = flag:gsub("^%-l", "") end
local function link_runtime(extra)
  links { "lettash_rt", ":liblua5.4-cjson.a", ":liblua5.4.a" }
  links(lmdb_links)
  links { "dl", "m" }
  if extra then links(extra) end
  linkoptions { "-Wl,-E" }
end

project "lettash"
  kind "ConsoleApp"
  files { "src/lh_main.c" }
  if has_readline then defines { "LH_READLINE" } end
  link_runtime(has_readline and { "readline" } or nil)

-- Embedding examples (examples/), linked like any host would link the static runtime.
for _, name in ipairs({ "embed_min", "game_loop", "poll_host" }) do
  project(name)
    kind "ConsoleApp"
    files { "examples/" .. name .. ".c" }
    link_runtime()
end

-- C unit tests of the parsers and the runtime (tests/c/).
project "lettash_tests"
  kind "ConsoleApp"
  files { "tests/c/*.c" }
  includedirs { "tests/c" }
  link_runtime()
