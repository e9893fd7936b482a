/* Unit tests of the JSON codec (src/lh_json.c) through its Lua module. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "lauxlib.h"
#include "lh_json.h"
#include "lualib.h"

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "json", luaopen_letta_json, 1);
  lua_pop(L, 1);
  return L;
}

/* Runs Lua code that returns one string; returns it (static copy) or the error prefixed "ERR:". */
static const char *eval(lua_State *L, const char *code) {
  static char out[4096];
  if (luaL_dostring(L, code) != LUA_OK) {
    snprintf(out, sizeof out, "ERR:%s", lua_tostring(L, -1));
  } else {
    snprintf(out, sizeof out, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
  }
  lua_settop(L, 0);
  return out;
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* An error raised by the codec: "ERR:" then, after the caller's position, the expected text. */
static int raised(const char *s, const char *msg) { return starts(s, "ERR:") && strstr(s, msg) != NULL; }

void test_json_integers_and_floats(void) {
  lua_State *L = new_state();
  CHECK_STR(eval(L, "return math.type(json.decode('[1]')[1])"), "integer");
  CHECK_STR(eval(L, "return math.type(json.decode('-0')) .. math.type(json.decode('1.0'))"), "integerfloat");
  CHECK_STR(eval(L, "return math.type(json.decode('1e2'))"), "float");
  CHECK_STR(eval(L, "return tostring(json.decode('9007199254740993'))"), "9007199254740993");
  CHECK_STR(eval(L, "return tostring(json.decode('9223372036854775807'))"), "9223372036854775807");
  CHECK_STR(eval(L, "return math.type(json.decode('92233720368547758080'))"), "float");
  CHECK_STR(eval(L, "return tostring(json.decode('-12.5e-1'))"), "-1.25");
  CHECK_STR(eval(L, "return json.encode({n = 9007199254740993})"), "{\"n\":9007199254740993}");
  CHECK_STR(eval(L, "return json.encode(math.mininteger)"), "-9223372036854775808");
  CHECK_STR(eval(L, "return json.encode({1.0, 0.1, 1e300, -0.0, 1/3})"),
            "[1.0,0.1,1e+300,-0.0,0.3333333333333333]");
  CHECK(raised(eval(L, "return json.encode(0/0)"), "json: cannot encode NaN"));
  CHECK(raised(eval(L, "return json.encode(math.huge)"), "json: cannot encode infinity"));
  lua_close(L);
}

void test_json_null_arrays_objects(void) {
  lua_State *L = new_state();
  CHECK_STR(eval(L, "return tostring(json.decode('null') == json.null)"), "true");
  CHECK_STR(eval(L, "return json.encode(json.decode('[null,1]'))"), "[null,1]");
  CHECK_STR(eval(L, "return json.encode(json.decode('{\"a\":[]}'))"), "{\"a\":[]}");
  CHECK_STR(eval(L, "return json.encode(json.decode('{\"a\":{}}'))"), "{\"a\":{}}");
  CHECK_STR(eval(L, "return json.encode({tags = json.array(), metadata = json.object()}):len()"), "25");
  CHECK_STR(eval(L, "return json.encode({tags = json.array()})"), "{\"tags\":[]}");
  CHECK_STR(eval(L, "return json.encode({})"), "{}");
  CHECK_STR(eval(L, "return json.encode(json.array({'a','b'}))"), "[\"a\",\"b\"]");
  CHECK_STR(eval(L, "return json.encode(json.object({'a'}))"), "{\"1\":\"a\"}");
  CHECK(starts(eval(L, "return json.encode({[1]='a',[3]='c'})"), "{\"")); /* sparse: an object */
  CHECK_STR(eval(L, "return tostring(json.is_array(json.decode('[]')))"), "true");
  CHECK_STR(eval(L, "return tostring(json.is_array(json.decode('{}')))"), "false");
  CHECK(raised(eval(L, "return json.encode({[true]=1})"), "json: cannot encode a table key of type boolean"));
  CHECK(raised(eval(L, "local t = {} t.t = t return json.encode(t)"), "(or a cycle)"));
  CHECK(raised(eval(L, "return json.encode(print)"), "json: cannot encode a value of type function"));
  lua_close(L);
}

void test_json_strings(void) {
  lua_State *L = new_state();
  CHECK_STR(eval(L, "return json.decode('\"a\\\\n\\\\t\\\\\"\\\\u00e9\\\\/\"')"), "a\n\t\"\xc3\xa9/");
  CHECK_STR(eval(L, "return json.decode('\"\\\\ud83d\\\\ude00\"')"), "\xf0\x9f\x98\x80");
  CHECK_STR(eval(L, "return json.decode('\"\\\\ud83d x\"')"), "\xef\xbf\xbd x");
  CHECK_STR(eval(L, "return json.encode('a\\n\\1\"\\\\\xc3\xa9')"), "\"a\\n\\u0001\\\"\\\\\xc3\xa9\"");
  CHECK(raised(eval(L, "return json.encode('\\255')"), "json: cannot encode string with invalid UTF-8"));
  CHECK(raised(eval(L, "return json.decode('\"\\255\"')"), "json: invalid UTF-8"));
  CHECK(raised(eval(L, "return json.decode('\"\\237\\160\\128\"')"), "json: invalid UTF-8")); /* encoded surrogate */
  CHECK(raised(eval(L, "return json.decode('\"a\\nb\"')"), "json: control character"));
  CHECK(raised(eval(L, "return json.decode('\"\\\\x\"')"), "json: invalid escape"));
  lua_close(L);
}

void test_json_malformed_input(void) {
  static const char *bad[] = {"", " ", "[", "[1,", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{1:2}",
                              "01", "-", "1.", ".5", "1e", "+1", "tru", "nul", "[1]x", "\"abc",
                              "[\"a\",]", "{\"a\":}", "NaN", "Infinity", NULL};
  lua_State *L = new_state();
  for (int i = 0; bad[i]; i++) {
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "decode");
    lua_pushstring(L, bad[i]);
    int rc = lua_pcall(L, 1, 1, 0);
    if (rc == LUA_OK) fprintf(stderr, "  accepted malformed JSON: '%s'\n", bad[i]);
    CHECK(rc != LUA_OK);
    if (rc != LUA_OK) CHECK(strstr(lua_tostring(L, -1), "json: ") != NULL);
    lua_settop(L, 0);
  }
  lua_close(L);
}

void test_json_depth_limits(void) {
  lua_State *L = new_state();
  CHECK_STR(eval(L, "return tostring(#json.encode(json.decode(('['):rep(1000) .. (']'):rep(1000))))"), "2000");
  CHECK(raised(eval(L, "return json.decode(('['):rep(1001) .. (']'):rep(1001))"),
               "json: nested too deeply"));
  CHECK(raised(eval(L, "return json.decode(('{\"a\":'):rep(10000))"), "json: nested too deeply"));
  CHECK(raised(eval(L, "local t = {} for i = 1, 2000 do t = {t} end return json.encode(t)"),
               "json: table nested too deeply"));
  lua_close(L);
}

void test_json_round_trip_document(void) {
  lua_State *L = new_state();
  const char *doc =
      "{\"id\":\"block-1\",\"limit\":5000,\"value\":\"{\\\"name\\\":\\\"Al\\\"}\",\"is_template\":false,"
      "\"metadata\":{},\"tags\":[],\"score\":0.25,\"description\":null}";
  lua_getglobal(L, "json");
  lua_getfield(L, -1, "decode");
  lua_pushstring(L, doc);
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
  lua_setglobal(L, "doc");
  CHECK_STR(eval(L, "return math.type(doc.limit) .. ' ' .. doc.value .. ' ' .. tostring(doc.description == json.null)"),
            "integer {\"name\":\"Al\"} true");
  CHECK_STR(eval(L, "local d = json.decode(json.encode(doc)) return json.encode({d.metadata, d.tags, d.limit, d.score})"),
            "[{},[],5000,0.25]");
  lua_close(L);
}
