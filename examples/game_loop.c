/* A game's frame loop (60 fps) that never blocks on the network: a Lua script starts a chat and
 * a streamed message as tasks, and each frame calls lh_step(rt, 0), which advances the transfers
 * and resumes the tasks whose answers came. Prints the longest time lettash took in one frame.
 *   LETTA_BASE_URL=http://127.0.0.1:8283 ./game_loop */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lettash.h"

static const char *script =
    "local letta = require 'letta'\n"
    "local client = letta.client()\n"
    "status, chunks = 'starting', 0\n"
    "letta.spawn(function()\n"
    "  local agent = client.agents:create{ name = 'npc', model = client.models:pick() }\n"
    "  local chat = letta.spawn(function()\n"
    "    reply = client.agents.messages:create(agent.id, 'Hello, innkeeper!').messages\n"
    "  end)\n"
    "  local stream = letta.spawn(function()\n"
    "    for ev in client.agents.messages:stream(agent.id, { text = 'Tell me a story', stream_tokens = true }) do\n"
    "      if ev.message_type == 'assistant_message' then chunks = chunks + 1 end\n"
    "    end\n"
    "  end)\n"
    "  letta.gather{ chat, stream }\n"
    "  client.agents:delete(agent.id)\n"
    "  status = 'done'\n"
    "end)\n"
    "function report() return string.format('%s: %d reply messages, %d streamed chunks', status, reply and #reply or 0, chunks) end\n"
    "function finished() return status == 'done' end\n";

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(void) {
  lh_runtime *rt = lh_new(NULL);
  if (!rt) return 1;
  if (lh_run_string(rt, script, "=game") != LH_OK) {
    fprintf(stderr, "game_loop: %s\n", lh_error(rt));
    lh_close(rt);
    return 1;
  }
  const double frame = 1000.0 / 60;
  double longest = 0, start = now_ms();
  int frames = 0;
  for (;;) {
    double t0 = now_ms();
    int live = lh_step(rt, 0); /* never waits: a frame tick */
    double spent = now_ms() - t0;
    if (spent > longest) longest = spent;
    frames++;
    if (live < 0) {
      fprintf(stderr, "game_loop: %s\n", lh_error(rt));
      break;
    }
    if (lh_call(rt, "finished", NULL) == LH_OK && strcmp(lh_result(rt), "true") == 0) break;
    if (now_ms() - start > 30000) {
      fprintf(stderr, "game_loop: gave up after 30 s\n");
      break;
    }
    /* the rest of the frame: the game's own work, here a sleep */
    double left = frame - (now_ms() - t0);
    if (left > 0) {
      struct timespec ts = {0, (long)(left * 1e6)};
      nanosleep(&ts, NULL);
    }
  }
  lh_call(rt, "report", NULL);
  printf("%s\n", lh_result(rt) ? lh_result(rt) : "(no report)");
  printf("frames: %d, longest lettash step: %.3f ms (budget 5 ms: %s)\n", frames, longest,
         longest <= 5.0 ? "met" : "NOT met");
  int ok = lh_call(rt, "finished", NULL) == LH_OK && strcmp(lh_result(rt), "true") == 0;
  lh_close(rt);
  return ok && longest <= 5.0 ? 0 : 1;
}
