/* Runs every C unit test and prints "N passed, N failed" (the line tests/run.sh reads). */
#include <stdio.h>

#include "check.h"

int lh_check_failures;

#define TESTS(X)                          \
  X(test_json_integers_and_floats)        \
  X(test_json_null_arrays_objects)        \
  X(test_json_strings)                    \
  X(test_json_malformed_input)            \
  X(test_json_depth_limits)               \
  X(test_json_round_trip_document)        \
  X(test_sse_single_event)                \
  X(test_sse_several_events_in_one_chunk) \
  X(test_sse_multi_line_data)             \
  X(test_sse_event_field_sets_type_for_one_event) \
  X(test_sse_id_persists_and_id_with_nul_is_ignored) \
  X(test_sse_retry_takes_only_ascii_digits) \
  X(test_sse_comments_are_ignored)        \
  X(test_sse_line_endings_lf_crlf_cr_mixed) \
  X(test_sse_cr_at_chunk_end_then_lf)     \
  X(test_sse_bom_only_at_the_start)       \
  X(test_sse_no_space_after_colon)        \
  X(test_sse_field_without_colon)         \
  X(test_sse_empty_data_line_is_dispatched) \
  X(test_sse_blank_lines_only_give_no_events) \
  X(test_sse_incomplete_trailing_event_is_not_dispatched) \
  X(test_sse_split_anywhere_gives_the_same_events) \
  X(test_sse_letta_stream)                \
  X(test_sse_letta_error_event)           \
  X(test_sse_over_limit_returns_etoobig)  \
  X(test_sse_callback_non_zero_stops)     \
  X(test_sse_new_and_free_edge_cases)     \
  X(test_sse_large_event_in_small_chunks) \
  X(test_headers_status_line_and_pairs)   \
  X(test_headers_trimming_and_odd_lines)  \
  X(test_headers_empty_and_null_input)    \
  X(test_headers_ends_exactly_at_the_buffer_end) \
  X(test_headers_callback_stops_the_parse) \
  X(test_lmdb_closed_handles_raise)       \
  X(test_lmdb_open_errors_name_the_field) \
  X(test_lmdb_open_failing_half_way_releases_everything) \
  X(test_lmdb_map_full_is_returned_not_raised) \
  X(test_lmdb_next_checks_arguments_before_opening_a_cursor) \
  X(test_runtime_embedded_library)        \
  X(test_runtime_require_letta)           \
  X(test_runtime_source_tree_override)    \
  X(test_embed_run_call_and_errors)       \
  X(test_embed_host_allocator_and_state)  \
  X(test_embed_pollfds_for_event_loop_hosts) \
  X(test_sandbox_cannot_read_files)       \
  X(test_sandbox_cannot_run_commands)     \
  X(test_sandbox_cannot_load_bytecode)    \
  X(test_sandbox_cannot_read_the_token)   \
  X(test_sandbox_infinite_loop_inside_pcall_is_stopped) \
  X(test_sandbox_memory_cap)              \
  X(test_sandbox_frozen_globals_and_exports) \
  X(test_embed_hostile_tostring_of_a_result) \
  X(test_embed_hostile_exports_table)     \
  X(test_embed_gc_and_close_metamethods_that_raise) \
  X(test_embed_error_objects_that_are_not_strings) \
  X(test_embed_memory_exhausted_while_reporting) \
  X(test_embed_panic_becomes_err_run)     \
  X(test_embed_reentry_is_refused)       \
  X(test_sandbox_waits_never_block_the_host) \
  X(test_http_session_with_bad_options_acquires_nothing) \
  X(test_http_request_that_cannot_start_releases_its_header_list) \
  X(test_http_pollfds_reports_descriptors_above_fd_setsize) \
  X(test_http_loop_hooks_hear_of_every_socket_and_the_timer)

#define DECLARE(name) void name(void);
TESTS(DECLARE)
#define ENTRY(name) {#name, name},
static const lh_test tests[] = {TESTS(ENTRY)};

int main(void) {
  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    lh_check_failures = 0;
    tests[i].fn();
    if (lh_check_failures == 0) {
      passed++;
      printf("ok - %s\n", tests[i].name);
    } else {
      failed++;
      printf("not ok - %s\n", tests[i].name);
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
