/* JSON <-> Lua 5.4 values, exactly: integers stay integers, null is a sentinel, and arrays and
 * objects keep their kind through a decode/encode round trip (Debian's lua-cjson 2.1.0 loses all
 * three). The parser is standalone C over a byte range so that it can be fuzzed on its own. */
#include "lh_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lh_util.h"

#define LH_JSON_MAXDEPTH 1000

/* ---------------------------------------------------------------------------------------------
 * Decoding */

typedef struct {
  lua_State *L;
  const char *s, *p, *end;
  int depth;
  int array_mt, object_mt; /* stack indices of the marker metatables */
} Decoder;

static int dec_error(Decoder *d, const char *what) {
  return luaL_error(d->L, "json: %s at byte %d", what, (int)(d->p - d->s) + 1);
}

static void skip_ws(Decoder *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
    d->p++;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static long read_hex4(Decoder *d) {
  long v = 0;
  if (d->end - d->p < 4) return -1;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)d->p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  d->p += 4;
  return v;
}

static void add_utf8(luaL_Buffer *b, unsigned long cp) {
  char u[4];
  int n;
  if (cp < 0x80) { u[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
  }
  luaL_addlstring(b, u, (size_t)n);
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  int n;
  unsigned long cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
  else return 0;
  if (end - p < n) return 0;
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return n;
}

static void decode_string(Decoder *d) {
  luaL_Buffer b;
  const char *run;
  d->p++; /* opening quote */
  /* Fast path: no escapes; push the slice directly. */
  run = d->p;
  while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20) {
    if ((unsigned char)*d->p < 0x80) { d->p++; continue; }
    int n = utf8_len((const unsigned char *)d->p, (const unsigned char *)d->end);
    if (!n) dec_error(d, "invalid UTF-8 in string");
    d->p += n;
  }
  if (d->p < d->end && *d->p == '"') {
    lua_pushlstring(d->L, run, (size_t)(d->p - run));
    d->p++;
    return;
  }
  luaL_buffinit(d->L, &b);
  luaL_addlstring(&b, run, (size_t)(d->p - run));
  for (;;) {
    if (d->p >= d->end) dec_error(d, "unterminated string");
    unsigned char c = (unsigned char)*d->p;
    if (c == '"') { d->p++; break; }
    if (c < 0x20) dec_error(d, "control character in string");
    if (c != '\\') {
      int n = c < 0x80 ? 1 : utf8_len((const unsigned char *)d->p, (const unsigned char *)d->end);
      if (!n) dec_error(d, "invalid UTF-8 in string");
      luaL_addlstring(&b, d->p, (size_t)n);
      d->p += n;
      continue;
    }
    d->p++;
    if (d->p >= d->end) dec_error(d, "unterminated string");
    c = (unsigned char)*d->p++;
    switch (c) {
      case '"': luaL_addchar(&b, '"'); break;
      case '\\': luaL_addchar(&b, '\\'); break;
      case '/': luaL_addchar(&b, '/'); break;
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'u': {
        long cp = read_hex4(d);
        if (cp < 0) dec_error(d, "invalid \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          /* A high surrogate must be followed by a low one; a lone half becomes U+FFFD. */
          if (d->end - d->p >= 6 && d->p[0] == '\\' && d->p[1] == 'u') {
            const char *save = d->p;
            d->p += 2;
            long lo = read_hex4(d);
            if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else { d->p = save; cp = 0xFFFD; }
          } else cp = 0xFFFD;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) cp = 0xFFFD;
        add_utf8(&b, (unsigned long)cp);
        break;
      }
      default: d->p--; dec_error(d, "invalid escape in string");
    }
  }
  luaL_pushresult(&b);
}

static void decode_number(Decoder *d) {
  const char *start = d->p;
  int is_float = 0;
  char tmp[64];
  if (d->p < d->end && *d->p == '-') d->p++;
  if (d->p >= d->end) dec_error(d, "invalid number");
  if (*d->p == '0') d->p++;
  else if (*d->p >= '1' && *d->p <= '9') while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  else dec_error(d, "invalid number");
  if (d->p < d->end && *d->p == '.') {
    is_float = 1;
    d->p++;
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') dec_error(d, "invalid number");
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  }
  if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
    is_float = 1;
    d->p++;
    if (d->p < d->end && (*d->p == '+' || *d->p == '-')) d->p++;
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') dec_error(d, "invalid number");
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  }
  size_t len = (size_t)(d->p - start);
  char *buf = tmp;
  if (len >= sizeof tmp) { /* absurdly long number: copy through a Lua-owned buffer */
    buf = (char *)lua_newuserdatauv(d->L, len + 1, 0);
  }
  memcpy(buf, start, len);
  buf[len] = '\0';
  if (!is_float) {
    /* Written as an integer: a Lua integer when it fits, else a float (like Lua's own reader). */
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == 0) {
      if (buf != tmp) lua_pop(d->L, 1);
      lua_pushinteger(d->L, (lua_Integer)v);
      return;
    }
  }
  double v = strtod(buf, NULL);
  if (buf != tmp) lua_pop(d->L, 1);
  lua_pushnumber(d->L, (lua_Number)v);
}

static int match_literal(Decoder *d, const char *lit, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0) return 0;
  d->p += n;
  return 1;
}

static void decode_value(Decoder *d);

static void enter(Decoder *d) {
  if (++d->depth > LH_JSON_MAXDEPTH) dec_error(d, "nested too deeply");
  luaL_checkstack(d->L, 4, "json: nested too deeply");
}

static void decode_array(Decoder *d) {
  lua_Integer n = 0;
  enter(d);
  d->p++; /* [ */
  lua_newtable(d->L);
  lua_pushvalue(d->L, d->array_mt);
  lua_setmetatable(d->L, -2);
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') { d->p++; d->depth--; return; }
  for (;;) {
    decode_value(d);
    lua_rawseti(d->L, -2, ++n);
    skip_ws(d);
    if (d->p < d->end && *d->p == ',') { d->p++; continue; }
    if (d->p < d->end && *d->p == ']') { d->p++; break; }
    dec_error(d, "expected ',' or ']' in array");
  }
  d->depth--;
}

static void decode_object(Decoder *d) {
  enter(d);
  d->p++; /* { */
  lua_createtable(d->L, 0, 4); /* room for a small object without rehashing */
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    /* Only empty objects need the marker: non-empty ones encode as objects anyway. */
    lua_pushvalue(d->L, d->object_mt);
    lua_setmetatable(d->L, -2);
    d->p++;
    d->depth--;
    return;
  }
  for (;;) {
    skip_ws(d);
    if (d->p >= d->end || *d->p != '"') dec_error(d, "expected string key in object");
    decode_string(d);
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') dec_error(d, "expected ':' in object");
    d->p++;
    decode_value(d);
    lua_rawset(d->L, -3);
    skip_ws(d);
    if (d->p < d->end && *d->p == ',') { d->p++; continue; }
    if (d->p < d->end && *d->p == '}') { d->p++; break; }
    dec_error(d, "expected ',' or '}' in object");
  }
  d->depth--;
}

static void decode_value(Decoder *d) {
  skip_ws(d);
  if (d->p >= d->end) dec_error(d, "unexpected end of input");
  switch (*d->p) {
    case '{': decode_object(d); return;
    case '[': decode_array(d); return;
    case '"': decode_string(d); return;
    case 't': if (match_literal(d, "true", 4)) { lua_pushboolean(d->L, 1); return; } break;
    case 'f': if (match_literal(d, "false", 5)) { lua_pushboolean(d->L, 0); return; } break;
    case 'n': if (match_literal(d, "null", 4)) { lua_pushlightuserdata(d->L, NULL); return; } break;
    default:
      if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) { decode_number(d); return; }
  }
  dec_error(d, "unexpected character");
}

int lh_json_decode(lua_State *L, const char *s, size_t len, int array_mt, int object_mt) {
  Decoder d = {L, s, s, s + len, 0, lua_absindex(L, array_mt), lua_absindex(L, object_mt)};
  decode_value(&d);
  skip_ws(&d);
  if (d.p != d.end) dec_error(&d, "trailing garbage");
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding. The output buffer is a userdata so that an error raised midway frees it (no leak
 * through longjmp). */

static int buf_gc(lua_State *L) {
  lh_buf_free((lh_buf *)lua_touserdata(L, 1));
  return 0;
}

static void buf_add(lua_State *L, lh_buf *b, const char *s, size_t n) {
  if (lh_buf_add(b, s, n)) luaL_error(L, "json: out of memory");
}

#define buf_addlit(L, b, s) buf_add(L, b, s, sizeof(s) - 1)

typedef struct {
  lua_State *L;
  lh_buf *b;
  int depth;
  int array_mt, object_mt;
} Encoder;

static void encode_string(Encoder *e, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  buf_add(e->L, e->b, "\"", 1);
  while (p < end) {
    const unsigned char *run = p;
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    if (p > run) buf_add(e->L, e->b, (const char *)run, (size_t)(p - run));
    if (p >= end) break;
    unsigned c = *p;
    if (c >= 0x80) {
      int n = utf8_len(p, end);
      if (!n) luaL_error(e->L, "json: cannot encode string with invalid UTF-8 (byte %d)", (int)(p - (const unsigned char *)s) + 1);
      buf_add(e->L, e->b, (const char *)p, (size_t)n);
      p += n;
      continue;
    }
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      default: esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; n = 6;
    }
    buf_add(e->L, e->b, esc, n);
    p++;
  }
  buf_add(e->L, e->b, "\"", 1);
}

static void encode_number(Encoder *e, int idx) {
  char tmp[64];
  int n;
  if (lua_isinteger(e->L, idx)) {
    n = snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double v = (double)lua_tonumber(e->L, idx);
    if (isnan(v) || isinf(v)) luaL_error(e->L, "json: cannot encode %s", isnan(v) ? "NaN" : "infinity");
    /* Shortest form that reads back to the same double; keep a '.' so it stays a float. */
    for (int prec = 15; prec <= 17; prec++) {
      n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v) break;
    }
    if (!strpbrk(tmp, ".eEn")) { tmp[n++] = '.'; tmp[n++] = '0'; tmp[n] = '\0'; }
  }
  buf_add(e->L, e->b, tmp, (size_t)n);
}

static void encode_value(Encoder *e, int idx);

/* 0: object, n > 0: array of n items, -1: empty and unmarked. */
static lua_Integer table_kind(Encoder *e, int idx) {
  lua_State *L = e->L;
  if (lua_getmetatable(L, idx)) {
    int is_array = lua_rawequal(L, -1, e->array_mt);
    int is_object = lua_rawequal(L, -1, e->object_mt);
    lua_pop(L, 1);
    if (is_array) return (lua_Integer)lua_rawlen(L, idx) > 0 ? (lua_Integer)lua_rawlen(L, idx) : -2;
    if (is_object) return 0;
  }
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      lua_Integer k = lua_tointeger(L, -1);
      if (k > max) max = k;
      count++;
    } else {
      lua_pop(L, 1);
      return 0;
    }
  }
  if (count == 0) return -1;
  return max == count ? max : 0;
}

static void encode_table(Encoder *e, int idx) {
  lua_State *L = e->L;
  if (++e->depth > LH_JSON_MAXDEPTH) luaL_error(L, "json: table nested too deeply (or a cycle)");
  luaL_checkstack(L, 6, "json: nested too deeply");
  lua_Integer kind = table_kind(e, idx);
  if (kind == -2) {
    buf_addlit(L, e->b, "[]");
  } else if (kind == -1) {
    buf_addlit(L, e->b, "{}"); /* like cjson: mark with json.array() to get [] */
  } else if (kind > 0) {
    buf_addlit(L, e->b, "[");
    for (lua_Integer i = 1; i <= kind; i++) {
      if (i > 1) buf_addlit(L, e->b, ",");
      lua_rawgeti(L, idx, i);
      encode_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    buf_addlit(L, e->b, "]");
  } else {
    int first = 1;
    buf_addlit(L, e->b, "{");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (!first) buf_addlit(L, e->b, ",");
      first = 0;
      int kt = lua_type(L, -2);
      if (kt == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        encode_string(e, k, kl);
      } else if (kt == LUA_TNUMBER) {
        buf_addlit(L, e->b, "\"");
        encode_number(e, lua_gettop(L) - 1);
        buf_addlit(L, e->b, "\"");
      } else {
        luaL_error(L, "json: cannot encode a table key of type %s", lua_typename(L, kt));
      }
      buf_addlit(L, e->b, ":");
      encode_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    buf_addlit(L, e->b, "}");
  }
  e->depth--;
}

static void encode_value(Encoder *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: buf_addlit(L, e->b, "null"); return;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) buf_addlit(L, e->b, "true");
      else buf_addlit(L, e->b, "false");
      return;
    case LUA_TNUMBER: encode_number(e, idx); return;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      encode_string(e, s, len);
      return;
    }
    case LUA_TTABLE: encode_table(e, idx); return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) { buf_addlit(L, e->b, "null"); return; }
      /* fallthrough */
    default: luaL_error(L, "json: cannot encode a value of type %s", luaL_typename(L, idx));
  }
}

int lh_json_encode(lua_State *L, int idx, int array_mt, int object_mt) {
  idx = lua_absindex(L, idx);
  array_mt = lua_absindex(L, array_mt);
  object_mt = lua_absindex(L, object_mt);
  lh_buf *b = (lh_buf *)lua_newuserdatauv(L, sizeof(lh_buf), 0);
  memset(b, 0, sizeof *b);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, buf_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  Encoder e = {L, b, 0, array_mt, object_mt};
  encode_value(&e, idx);
  lua_pushlstring(L, b->data, b->len);
  lh_buf_free(b);
  lua_remove(L, -2); /* the buffer box */
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * The Lua module `letta.json` (C part). Upvalue 1 is the array metatable, 2 the object one. */

static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  return lh_json_decode(L, s, len, lua_upvalueindex(1), lua_upvalueindex(2));
}

static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  return lh_json_encode(L, 1, lua_upvalueindex(1), lua_upvalueindex(2));
}

/* json.array(t) / json.object(t): mark t (or a new table) and return it. */
static int mark(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, 1);
  return 1;
}

/* json.is_array(t): true when t was decoded from, or marked as, a JSON array. */
static int l_is_array(lua_State *L) {
  lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1) &&
                         lua_rawequal(L, -1, lua_upvalueindex(1)));
  return 1;
}

int luaopen_letta_json(lua_State *L) {
  lua_newtable(L); /* module */
  lua_createtable(L, 0, 1); /* array metatable */
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  lua_createtable(L, 0, 1); /* object metatable */
  lua_pushliteral(L, "object");
  lua_setfield(L, -2, "__jsontype");
  int mod = lua_absindex(L, -3), amt = lua_absindex(L, -2), omt = lua_absindex(L, -1);

  static const struct { const char *name; lua_CFunction fn; } fns[] = {
      {"decode", l_decode}, {"encode", l_encode}, {"is_array", l_is_array}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    lua_pushvalue(L, amt);
    lua_pushvalue(L, omt);
    lua_pushcclosure(L, fns[i].fn, 2);
    lua_setfield(L, mod, fns[i].name);
  }
  lua_pushvalue(L, amt);
  lua_pushcclosure(L, mark, 1);
  lua_setfield(L, mod, "array");
  lua_pushvalue(L, omt);
  lua_pushcclosure(L, mark, 1);
  lua_setfield(L, mod, "object");
  lua_pushvalue(L, amt);
  lua_setfield(L, mod, "array_mt");
  lua_pushvalue(L, omt);
  lua_setfield(L, mod, "object_mt");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, mod, "null"); /* the same value as cjson.null */
  lua_settop(L, mod);
  return 1;
}
