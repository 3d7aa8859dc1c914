/* text/parse.h - internal helpers shared by the streaming output parsers (parse_*.c): building an
 * eng_deltas list (qnext/chat.h). Not part of the public API.
 *
 * Every add copies its strings into the list's arena (NUL-terminated) and re-points the public
 * pointers when the arena moves. Text of the same kind as the last item is merged into it. On
 * allocation failure the list is marked (_oom) and the add returns false; callers turn that into
 * ENG_ERR_NOMEM.
 */
#ifndef QN_TEXT_PARSE_H
#define QN_TEXT_PARSE_H

#include "qnext/chat.h"

#include <stdbool.h>
#include <stddef.h>

/* Appends REASONING or CONTENT text (n may be 0: nothing is added). */
bool eng_deltas_add_text(eng_deltas *d, eng_delta_kind kind, const char *s, size_t n, bool malformed);

/* Appends a TOOL_CALL item (index, id, name, raw block) followed by one TOOL_ARGS item. */
bool eng_deltas_add_call(eng_deltas *d, int index, const char *id, const char *name, size_t name_len,
                         const char *raw, size_t raw_len, const char *args, size_t args_len);

#endif /* QN_TEXT_PARSE_H */
