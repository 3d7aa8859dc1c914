/* text/parse_output.c - the reasoning splitter and the tool-call parser chained for the engine
 * (qnext/chat.h): reasoning deltas go straight out, content deltas go through the tool-call parser.
 */
#include "qnext/chat.h"

#include "core/core.h"  /* eng_calloc */
#include "text/parse.h" /* eng_deltas_add_text */

struct eng_output_parser {
    eng_reasoning_parser *reasoning;
    eng_toolcall_parser *tools; /* NULL: content passes through */
    eng_deltas tmp;             /* the splitter's output of one step */
};

eng_status eng_output_parser_create(eng_reasoning_start start, bool tools, uint64_t id_seed,
                                    eng_output_parser **out)
{
    *out = NULL;
    eng_status st;
    eng_output_parser *p = eng_calloc(1, sizeof *p);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "out of memory creating the output parser");
    eng_deltas_init(&p->tmp);
    if ((st = eng_reasoning_parser_create(start, &p->reasoning)) != ENG_OK) goto fail;
    if (tools && (st = eng_toolcall_parser_create(id_seed, &p->tools)) != ENG_OK) goto fail;
    *out = p;
    return ENG_OK;
fail:
    eng_output_parser_destroy(p);
    return st;
}

void eng_output_parser_destroy(eng_output_parser *p)
{
    if (!p) return;
    eng_reasoning_parser_destroy(p->reasoning);
    eng_toolcall_parser_destroy(p->tools);
    eng_deltas_free(&p->tmp);
    eng_free(p);
}

const eng_toolcall_parser *eng_output_parser_tools(const eng_output_parser *p)
{
    return p->tools;
}

/* Routes the splitter's deltas of this step into `out`. */
static eng_status route(eng_output_parser *p, eng_deltas *out)
{
    eng_status st = ENG_OK;
    for (size_t i = 0; i < p->tmp.n && st == ENG_OK; i++) {
        const eng_delta *d = &p->tmp.items[i];
        if (d->kind == ENG_DELTA_CONTENT && p->tools)
            st = eng_toolcall_parser_feed(p->tools, d->text, d->len, out);
        else if (!eng_deltas_add_text(out, d->kind, d->text, d->len, d->malformed))
            st = eng_err_set(ENG_ERR_NOMEM, "out of memory in output parser");
    }
    eng_deltas_clear(&p->tmp);
    return st;
}

eng_status eng_output_parser_feed(eng_output_parser *p, const char *text, size_t len, eng_deltas *out)
{
    eng_status st = eng_reasoning_parser_feed(p->reasoning, text, len, &p->tmp);
    if (st != ENG_OK) {
        eng_deltas_clear(&p->tmp);
        return st;
    }
    return route(p, out);
}

eng_status eng_output_parser_finish(eng_output_parser *p, eng_deltas *out)
{
    eng_status st = eng_reasoning_parser_finish(p->reasoning, &p->tmp);
    if (st == ENG_OK) st = route(p, out);
    if (st == ENG_OK && p->tools) st = eng_toolcall_parser_finish(p->tools, out);
    return st;
}
