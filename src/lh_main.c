/* lettash, the command-line host: lua.c's behaviour (options, arg, error handling, REPL) over the
 * lettash runtime. As in lua.c, everything runs inside one protected call of pmain, and SIGINT only
 * sets a hook that raises the letta.Error "interrupted" in the running chunk. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lettash.h"
#include "lua.h"
#include "lualib.h"

#ifdef LH_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

#define PROGNAME "lettash"
#define PROMPT "> "
#define PROMPT2 ">> "
#define MAXINPUT 512
#define HISTORY_FILE ".lettash_history"
#define HISTORY_MAX 1000

static lua_State *globalL = NULL;
static const char *progname = PROGNAME;
static lua_CFunction msghandler = lh_traceback; /* docall's; the REPL sets repl_msghandler */
static int interactive_tty = 0; /* stdin is a terminal: prompts, line editing, history */

/* ---------------------------------------------------------------------------------------------
 * Interruption (Ctrl-C, and SIGTERM the same way, so a script's cleanup runs when it is stopped) */

/* The error Ctrl-C raises: require("letta.errors").interrupted(), a letta.Error with code
 * "interrupted" that prints "interrupted". Callers test the code (errors.is), never the text. */
static int new_interrupted(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "letta.errors");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "interrupted");
  lua_call(L, 0, 1);
  return 1;
}

static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lua_pushcfunction(L, new_interrupted);
  /* (protected: a hook that fails to build its error, out of memory, still interrupts) */
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushliteral(L, "interrupted");
  }
  lua_error(L);
}

static void laction(int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  signal(sig, SIG_DFL); /* a second Ctrl-C (or SIGTERM) kills the process */
  lua_sethook(globalL, lstop, flag, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Messages and errors */

static void print_usage(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fprintf(stderr, "try '%s --help' for more information\n", progname);
}

static void print_help(void) {
  printf(
      "usage: %s [options] [script [args]]\n"
      "Run Lua 5.4 scripts with the Letta client library built in (require \"letta\").\n"
      "\n"
      "Options:\n"
      "  -e stat   execute string 'stat'\n"
      "  -i        enter interactive mode after executing 'script'\n"
      "  -l mod    require library 'mod' into global 'mod' (-l g=mod: into global 'g')\n"
      "  -v        show version information (lettash, Lua, libcurl, LMDB)\n"
      "  -E        ignore environment variables (LETTASH_INIT, LETTASH_LUA_PATH, LUA_PATH...)\n"
      "  -W        turn warnings on\n"
      "  --help    show this help\n"
      "  --        stop handling options\n"
      "  -         stop handling options and execute stdin\n"
      "\n"
      "With no script and stdin a terminal, lettash starts the REPL (history in ~/" HISTORY_FILE ").\n"
      "\n"
      "Environment variables:\n"
      "  LETTA_BASE_URL     Letta server URL (default http://localhost:8283)\n"
      "  LETTA_API_KEY      token sent as 'Authorization: Bearer' (Letta Cloud)\n"
      "  LETTA_PASSWORD     password of a self-hosted server (used when LETTA_API_KEY is unset)\n"
      "  LETTA_STORE        path of the local LMDB store\n"
      "  LETTASH_INIT       code (or @file) run before the script, like LUA_INIT\n"
      "  LETTASH_LUA_PATH   ';'-separated directories holding letta/: load the Lua library from\n"
      "                     there instead of the copy compiled in (development)\n"
      "  LUA_PATH, LUA_CPATH  module search paths, as for lua5.4\n",
      progname);
}

static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
  }
  return status;
}

/* Runs the function below its narg arguments, with the message handler and Ctrl-C (SIGINT and
 * SIGTERM) enabled. */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  globalL = L;
  signal(SIGINT, laction);
  signal(SIGTERM, laction);
  int status = lua_pcall(L, narg, nres, base);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  lua_remove(L, base);
  return status;
}

static void print_version(void) {
  printf("lettash %s (%s, libcurl %s, LMDB %s)\n", LETTASH_VERSION, LUA_RELEASE, lh_version_curl(),
         lh_version_lmdb());
  fflush(stdout);
}

static void print_banner(void) {
  print_version();
  printf("Lua with the Letta client: `letta` is loaded. Ctrl-D exits, Ctrl-C interrupts.\n");
  fflush(stdout);
}

/* ---------------------------------------------------------------------------------------------
 * Running code */

/* arg table: script at 0, interpreter and options at negative indices, script args positive. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0; /* no script name */
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dofile(lua_State *L, const char *name) { return dochunk(L, luaL_loadfile(L, name)); }

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod or -l g=mod: global[g or mod] = require(mod) */
static int dolibrary(lua_State *L, char *globname) {
  char *modname = strchr(globname, '=');
  if (modname == NULL) {
    modname = globname;
    globname = strrchr(modname, '.') ? strrchr(modname, '.') + 1 : modname;
  } else {
    *modname = '\0';
    modname++;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  int status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, globname);
  return report(L, status);
}

static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  int i;
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

#define has_error 1
#define has_i 2
#define has_v 4
#define has_e 8
#define has_E 16
#define has_help 32

/* Scans options; returns flags and sets *first to the script index (or argc). */
static int collectargs(char **argv, int *first) {
  int args = 0;
  int i;
  if (argv[0] == NULL) { /* (the name in messages stays "lettash" whatever argv[0] is) */
    *first = -1;
    return 0;
  }
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args; /* not an option: the script */
    switch (argv[i][1]) {
      case '-':
        if (strcmp(argv[i], "--help") == 0) { args |= has_help; break; }
        if (argv[i][2] != '\0') return has_error;
        *first = i + 1;
        return args;
      case '\0': return args; /* '-' is the script (stdin) */
      case 'E':
        if (argv[i][2] != '\0') return has_error;
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'i': args |= has_i; /* lua.c: -i implies -v; we show it on terminals only */
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        args |= has_v;
        break;
      case 'e': args |= has_e; /* FALLTHROUGH */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return has_error;
        }
        break;
      default: return has_error;
    }
  }
  *first = i;
  return args;
}

/* Runs -e and -l in order; -W switches warnings on. */
static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
      case 'e':
      case 'l': {
        char *extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        int status = (option == 'e') ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W': lua_warning(L, "@on", 0); break;
    }
  }
  return 1;
}

static int handle_luainit(lua_State *L) {
  const char *init = getenv("LETTASH_INIT");
  if (init == NULL || *init == '\0') return LUA_OK;
  if (init[0] == '@') return dofile(L, init + 1);
  return dostring(L, init, "=LETTASH_INIT");
}

/* ---------------------------------------------------------------------------------------------
 * REPL */

#ifdef LH_READLINE
static char history_path[4096];

static void history_open(void) {
  const char *home = getenv("HOME");
  if (!home || !*home) return;
  snprintf(history_path, sizeof history_path, "%s/%s", home, HISTORY_FILE);
  using_history();
  read_history(history_path);
}

/* Whether the line may hold a secret the user typed (a token, a password: letta.repl's is_secret
 * says), which must not reach ~/.lettash_history: it outlives the session and is not treated as a
 * secret. When the check cannot run (letta.repl failed to load), every line is taken for one:
 * losing some history is better than keeping a secret. */
static int holds_secret(lua_State *L, const char *line) {
  int secret = 1;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "lettash.is_secret") == LUA_TFUNCTION) {
    lua_pushstring(L, line);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) secret = lua_toboolean(L, -1);
  }
  lua_pop(L, 1); /* the answer, the error or what was not a function */
  return secret;
}

static void history_add(lua_State *L, const char *line) {
  if (!line[0] || holds_secret(L, line)) return; /* neither in memory (up-arrow) nor in the file */
  add_history(line);
  if (history_path[0]) { /* append now, so a crash or kill loses nothing */
    if (append_history(1, history_path) != 0) write_history(history_path);
    history_truncate_file(history_path, HISTORY_MAX);
  }
}
#endif

/* The prompt: _PROMPT / _PROMPT2 when set (as in lua.c), else "> " / ">> ". It stays on the
 * stack while in use: the caller pops it. */
static const char *get_prompt(lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    return lua_pushstring(L, firstline ? PROMPT : PROMPT2);
  }
  const char *p = luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2); /* keep the string (on the stack) while it is in use */
  return p;
}

/* Reads one line into a Lua string on the stack; 0 at end of input. */
static int pushline(lua_State *L, int firstline) {
  const char *prompt = interactive_tty ? get_prompt(L, firstline) : "";
  char *line;
  size_t len;
#ifdef LH_READLINE
  if (interactive_tty) {
    line = readline(prompt);
    lua_pop(L, 1); /* the prompt */
    if (line == NULL) return 0;
    lua_pushstring(L, line);
    free(line);
    return 1;
  }
#endif
  char buffer[MAXINPUT];
  if (interactive_tty) { /* no readline: plain prompts on a terminal only */
    fputs(prompt, stdout);
    fflush(stdout);
    lua_pop(L, 1);
  }
  if (fgets(buffer, sizeof buffer, stdin) == NULL) return 0;
  line = buffer;
  len = strlen(buffer);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, line, len);
  while (len > 0 && buffer[len - 1] != '\n') { /* line longer than the buffer */
    if (fgets(buffer, sizeof buffer, stdin) == NULL) break;
    len = strlen(buffer);
    luaL_addlstring(&b, buffer, len);
  }
  luaL_pushresult(&b);
  /* drop the newline */
  size_t l;
  const char *s = lua_tolstring(L, -1, &l);
  if (l > 0 && s[l - 1] == '\n') {
    lua_pushlstring(L, s, l - 1);
    lua_remove(L, -2);
  }
  return 1;
}

static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) lua_remove(L, -2);
  else lua_pop(L, 2);
  return status;
}

#define EOFMARK "<eof>"
#define marklen (sizeof(EOFMARK) / sizeof(char) - 1)

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= marklen && strcmp(msg + lmsg - marklen, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !pushline(L, 0)) return status;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Reads a complete statement or expression and compiles it; -1 at end of input. */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  if (!pushline(L, 1)) return -1;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
#ifdef LH_READLINE
  if (interactive_tty) history_add(L, lua_tostring(L, 1));
#endif
  lua_remove(L, 1);
  return status;
}

/* Prints results through letta.repl's show (tables readably), else through print. */
static void l_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    if (lua_getfield(L, LUA_REGISTRYINDEX, "lettash.show") != LUA_TFUNCTION) {
      lua_pop(L, 1);
      lua_getglobal(L, "print");
    }
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
  }
}

/* REPL set-up in Lua (letta.repl): globals such as `letta`, and the printer. Failures only warn. */
static void repl_setup(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "letta.repl");
  if (docall(L, 1, 1) != LUA_OK) {
    report(L, LUA_ERRRUN);
    return;
  }
  if (lua_getfield(L, -1, "start") == LUA_TFUNCTION) report(L, docall(L, 0, 0));
  else lua_pop(L, 1);
  lua_getfield(L, -1, "show");
  lua_setfield(L, LUA_REGISTRYINDEX, "lettash.show");
  lua_getfield(L, -1, "is_secret");
  lua_setfield(L, LUA_REGISTRYINDEX, "lettash.is_secret");
  lua_pop(L, 1);
}

/* The REPL's message handler. An error raised on purpose prints as its message alone, one line:
 * an error object (a letta.Error: its __tostring), or a message from a C function, which is where
 * error(), assert and argument checks ("bad argument #1 to 'retrieve' (...)") raise. The traceback
 * is kept for errors the Lua VM raised in Lua code itself (calling nil, indexing nil...), the bugs
 * where it helps. Scripts keep lua.c's handler: a traceback always. */
static int repl_msghandler(lua_State *L) {
  lua_Debug ar;
  int raised_by_c = lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) && strcmp(ar.what, "C") == 0;
  if (lua_isstring(L, 1)) {
    if (!raised_by_c) return lh_traceback(L);
    lua_tostring(L, 1);
    lua_settop(L, 1);
    return 1;
  }
  if (!luaL_callmeta(L, 1, "__tostring") || lua_type(L, -1) != LUA_TSTRING)
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  return 1;
}

static void doREPL(lua_State *L) {
  int status;
  const char *oldprogname = progname;
  progname = NULL; /* errors in the REPL are printed without the program name, as lua.c does */
  msghandler = repl_msghandler;
#ifdef LH_READLINE
  if (interactive_tty) history_open();
#endif
  repl_setup(L);
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) l_print(L);
    else report(L, status);
  }
  lua_settop(L, 0);
  if (interactive_tty) {
    fputs("\n", stdout);
    fflush(stdout);
  }
  progname = oldprogname;
  msghandler = lh_traceback;
}

/* ---------------------------------------------------------------------------------------------
 * Main */

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = argc;
  int args = collectargs(argv, &script);
  int optlim = (script > 0) ? script : argc; /* first argv that is not an option */
  luaL_checkversion(L);
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & has_help) {
    print_help();
    lua_pushboolean(L, 1);
    return 1;
  }
  lh_openlibs(L, (args & has_E) ? LH_NOENV : 0);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (args & has_v) print_version();
  if (!(args & has_E)) {
    if (handle_luainit(L) != LUA_OK) return 0;
  }
  if (!runargs(L, argv, optlim)) return 0;
  if (script > 0 && script < argc) {
    if (handle_script(L, argv + script) != LUA_OK) return 0;
  }
  if (args & has_i) {
    if (interactive_tty && !(args & has_v)) print_banner();
    doREPL(L);
  } else if (script == argc && !(args & (has_e | has_v))) {
    if (interactive_tty) {
      print_banner();
      doREPL(L);
    } else {
      dofile(L, NULL); /* executes stdin as a file */
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  interactive_tty = isatty(STDIN_FILENO);
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, &pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int result = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
