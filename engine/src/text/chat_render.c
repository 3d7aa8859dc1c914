/* text/chat_render.c - native renderers of the three known chat templates (qnext/chat.h).
 *
 * Each function below is a line-by-line transcription of the Jinja template it renders, run with
 * the semantics transformers gives it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks;
 * every statement in these templates uses the "-" modifiers, so no template whitespace reaches the
 * output and only the string literals do). The value model is Python's, via text/pyjson.h:
 *   - `x is string`          -> type PJ_STR;
 *   - truthiness             -> pj_truthy (Undefined, None, 0, "", [], {} are false);
 *   - `a + b` on strings     -> raises unless both are str (Undefined raises UndefinedError);
 *   - `{{ x }}`              -> Python str(x) (Undefined prints nothing, None prints "None");
 *   - `x | tojson`           -> json.dumps(x, ensure_ascii=False) (Undefined raises TypeError);
 *   - `obj.attr`             -> dict key lookup; Undefined for anything else or a missing key;
 *   - `for x in v`           -> list items, str characters, dict keys; numbers/bools raise.
 * A Jinja error becomes ENG_ERR_INVALID with a detail naming the message and the failing step.
 *
 * Before rendering, the messages get the preprocessing transformers 5.x and vLLM apply to an
 * OpenAI request: keys whose value is null are dropped (so null content is Undefined);
 * `reasoning_content` is taken from the first non-null of reasoning_content / thinking /
 * reasoning; a content list of text parts is joined with "\n" as vLLM's "string" content format
 * does (vLLM skips empty parts; so do we).
 */
#include "qnext/chat.h"

#include "core/core.h"   /* eng_buf, eng_malloc */
#include "text/pyjson.h" /* pj_value, pj_parse, pj_dumps, pj_str */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ==== small string helpers (byte-level: every separator here is ASCII) ======================= */

typedef struct span {
    const char *s;
    size_t n;
} span;

static span sp(const char *s, size_t n)
{
    return (span){s, n};
}

static span sp_val(const pj_value *v)
{
    return sp(v->s, v->n);
}

static const char *find(span h, const char *needle)
{
    size_t nl = strlen(needle);
    return h.n >= nl ? memmem(h.s, h.n, needle, nl) : NULL;
}

/* Start of the last occurrence of needle, or NULL. */
static const char *rfind(span h, const char *needle)
{
    size_t nl = strlen(needle);
    if (h.n < nl) return NULL;
    for (size_t i = h.n - nl + 1; i-- > 0;)
        if (memcmp(h.s + i, needle, nl) == 0) return h.s + i;
    return NULL;
}

static span lstrip_nl(span x)
{
    while (x.n && x.s[0] == '\n') x.s++, x.n--;
    return x;
}

static span rstrip_nl(span x)
{
    while (x.n && x.s[x.n - 1] == '\n') x.n--;
    return x;
}

static bool starts_with(span x, const char *p)
{
    size_t n = strlen(p);
    return x.n >= n && memcmp(x.s, p, n) == 0;
}

static bool ends_with(span x, const char *p)
{
    size_t n = strlen(p);
    return x.n >= n && memcmp(x.s + x.n - n, p, n) == 0;
}

static bool is_str(const pj_value *v)
{
    return v->type == PJ_STR;
}

static bool eq_str(const pj_value *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->type == PJ_STR && v->n == n && memcmp(v->s, lit, n) == 0;
}

/* Jinja attribute access: a dict key, else Undefined. */
static const pj_value *attr(const pj_value *v, const char *key)
{
    const pj_value *r = pj_get(v, key);
    return r ? r : &pj_undefined;
}

/* Python's type name of a value, for error details. */
static const char *py_type(const pj_value *v)
{
    switch (v->type) {
    case PJ_UNDEF:
        return "Undefined";
    case PJ_NULL:
        return "NoneType";
    case PJ_BOOL:
        return "bool";
    case PJ_INT:
        return "int";
    case PJ_FLOAT:
        return "float";
    case PJ_STR:
        return "str";
    case PJ_ARRAY:
        return "list";
    case PJ_OBJECT:
        return "dict";
    }
    return "?";
}

/* ==== messages after preprocessing ============================================================ */

typedef struct msg {
    const pj_value *role, *content, *reasoning, *tool_calls; /* &pj_undefined when absent or null */
} msg;

typedef struct render {
    eng_template_kind kind;
    pj_doc *doc; /* holds joined content strings */
    msg *m;
    size_t n;
    const pj_value *tools; /* PJ_ARRAY or NULL */
    bool thinking_off;     /* hybrid: enable_thinking is false */
    bool add_gen;
    eng_buf out;
} render;

static eng_status nomem(void)
{
    return eng_err_set(ENG_ERR_NOMEM, "out of memory rendering the chat template");
}

/* A transformers/Jinja exception, as ENG_ERR_INVALID. */
static eng_status hf_raise(const render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static eng_status hf_raise(const render *r, const char *fmt, ...)
{
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return eng_err_set(ENG_ERR_INVALID, "%s (the %s chat template fails on this input in transformers too)",
                       detail, eng_template_name(r->kind));
}

static const pj_value *field(const pj_value *o, const char *key)
{
    const pj_value *v = pj_get(o, key);
    return (v && v->type != PJ_NULL) ? v : &pj_undefined;
}

/* OpenAI content parts -> one string, as vLLM's "string" content format: text of each text part,
 * empty ones skipped, joined with "\n". */
static eng_status join_parts(render *r, size_t i, const pj_value *parts, const pj_value **out)
{
    eng_buf b;
    eng_buf_init(&b);
    eng_status st = ENG_OK;
    bool any = false;
    for (size_t j = 0; j < parts->n; j++) {
        const pj_value *p = &parts->items[j], *text = NULL;
        if (p->type == PJ_STR) {
            text = p;
        } else if (p->type == PJ_OBJECT) {
            const pj_value *type = pj_get(p, "type");
            if (!type || type->type != PJ_STR) {
                st = eng_err_set(ENG_ERR_INVALID,
                                 "messages[%zu].content[%zu]: a content part needs a string \"type\"", i, j);
                goto out;
            }
            const char *key = NULL;
            if (eq_str(type, "text"))
                key = "text";
            else if (eq_str(type, "refusal"))
                key = "refusal";
            if (!key) {
                st = eng_err_set(
                    ENG_ERR_UNSUPPORTED,
                    "messages[%zu].content[%zu]: content parts of type '%.*s' are not supported: this "
                    "model reads text only (use \"text\" parts or a string)",
                    i, j, (int)(type->n > 64 ? 64 : type->n), type->s);
                goto out;
            }
            text = pj_get(p, key);
            if (text && text->type == PJ_NULL) text = NULL;
            if (text && text->type != PJ_STR) {
                st = eng_err_set(ENG_ERR_INVALID, "messages[%zu].content[%zu]: \"%s\" must be a string", i, j,
                                 key);
                goto out;
            }
        } else {
            st =
                eng_err_set(ENG_ERR_INVALID,
                            "messages[%zu].content[%zu]: a content part must be an object or a string", i, j);
            goto out;
        }
        if (!text || text->n == 0) continue;
        if (any && !eng_buf_putc(&b, '\n')) break;
        if (!eng_buf_append(&b, text->s, text->n)) break;
        any = true;
    }
    if (b.oom) {
        st = nomem();
        goto out;
    }
    *out = pj_doc_new_str(r->doc, b.data ? b.data : "", b.len);
    if (!*out) st = nomem();
out:
    eng_buf_free(&b);
    return st;
}

static eng_status prepare_messages(render *r, const pj_value *messages)
{
    if (!messages || messages->type != PJ_ARRAY)
        return eng_err_set(ENG_ERR_INVALID, "messages: must be a JSON array of message objects");
    if (messages->n == 0)
        return eng_err_set(ENG_ERR_INVALID,
                           "messages: the conversation is empty (at least one message is needed)");
    r->n = messages->n;
    r->m = pj_doc_alloc(r->doc, r->n * sizeof *r->m);
    if (!r->m) return nomem();
    for (size_t i = 0; i < r->n; i++) {
        const pj_value *o = &messages->items[i];
        if (o->type != PJ_OBJECT)
            return eng_err_set(ENG_ERR_INVALID, "messages[%zu]: must be an object, not a %s", i, py_type(o));
        msg *m = &r->m[i];
        m->role = field(o, "role");
        m->content = field(o, "content");
        m->tool_calls = field(o, "tool_calls");
        m->reasoning = field(o, "reasoning_content");
        if (m->reasoning->type == PJ_UNDEF) m->reasoning = field(o, "thinking");
        if (m->reasoning->type == PJ_UNDEF) m->reasoning = field(o, "reasoning");
        if (m->content->type == PJ_ARRAY) {
            eng_status st = join_parts(r, i, m->content, &m->content);
            if (st != ENG_OK) return st;
        }
    }
    return ENG_OK;
}

/* ==== output helpers ========================================================================== */

static void put(render *r, const char *lit)
{
    eng_buf_puts(&r->out, lit);
}

static void put_span(render *r, span x)
{
    eng_buf_append(&r->out, x.s, x.n);
}

/* `'...' + v` needs v to be a str: Undefined raises UndefinedError, others TypeError. */
static eng_status need_str(const render *r, const pj_value *v, size_t i, const char *what)
{
    if (v->type == PJ_STR) return ENG_OK;
    if (v->type == PJ_UNDEF)
        return hf_raise(
            r,
            "messages[%zu]: the %s is missing or null but the template concatenates it as a string "
            "(jinja2 UndefinedError)",
            i, what);
    return hf_raise(r,
                    "messages[%zu]: the %s is a %s but the template concatenates it as a string (TypeError)",
                    i, what, py_type(v));
}

/* ==== shared pieces =========================================================================== */

static const char tools_head[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
    "function signatures within <tools></tools> XML tags:\n<tools>";
static const char tools_tail[] =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n";

/* The system/tools header every template opens with. */
static eng_status render_header(render *r)
{
    const msg *m0 = &r->m[0];
    eng_status st;
    if (r->tools && r->tools->n > 0) {
        put(r, "<|im_start|>system\n");
        if (eq_str(m0->role, "system")) {
            if ((st = need_str(r, m0->content, 0, "system message content")) != ENG_OK) return st;
            put_span(r, sp_val(m0->content));
            put(r, "\n\n");
        }
        put(r, tools_head);
        for (size_t t = 0; t < r->tools->n; t++) {
            put(r, "\n");
            bool undef = false;
            if (!pj_dumps(&r->tools->items[t], &r->out, &undef) && !r->out.oom)
                return hf_raise(r, "tools[%zu] cannot be serialised to JSON", t);
        }
        put(r, tools_tail);
    } else if (eq_str(m0->role, "system")) {
        if ((st = need_str(r, m0->content, 0, "system message content")) != ENG_OK) return st;
        put(r, "<|im_start|>system\n");
        put_span(r, sp_val(m0->content));
        put(r, "<|im_end|>\n");
    }
    return ENG_OK;
}

/* {%- if message.tool_calls %} {%- for tool_call in message.tool_calls %} ... */
static eng_status render_tool_calls(render *r, size_t i, const pj_value *tc, bool content_truthy)
{
    if (!pj_truthy(tc)) return ENG_OK;
    switch (tc->type) {
    case PJ_ARRAY:
        break;
    case PJ_STR:
    case PJ_OBJECT:
        /* Iterating gives characters / keys: strings, whose .arguments is Undefined -> tojson raises. */
        return hf_raise(
            r,
            "messages[%zu]: tool_calls is a %s, not a list: its items have no arguments (TypeError: "
            "Object of type Undefined is not JSON serializable)",
            i, py_type(tc));
    default:
        return hf_raise(r, "messages[%zu]: tool_calls is a %s, which is not iterable (TypeError)", i,
                        py_type(tc));
    }
    for (size_t j = 0; j < tc->n; j++) {
        if ((j == 0 && content_truthy) || j > 0) put(r, "\n");
        const pj_value *call = &tc->items[j];
        const pj_value *fn = attr(call, "function");
        if (pj_truthy(fn)) call = fn;
        put(r, "<tool_call>\n{\"name\": \"");
        pj_str(attr(call, "name"), &r->out);
        put(r, "\", \"arguments\": ");
        const pj_value *args = attr(call, "arguments");
        if (is_str(args)) {
            put_span(r, sp_val(args));
        } else {
            bool undef = false;
            if (!pj_dumps(args, &r->out, &undef) && undef)
                return hf_raise(r,
                                "messages[%zu].tool_calls[%zu]: no \"arguments\" (TypeError: Object of type "
                                "Undefined is not JSON serializable)",
                                i, j);
        }
        put(r, "}\n</tool_call>");
    }
    return ENG_OK;
}

/* Consecutive tool messages share one user turn. `content` is what the template prints. */
static void render_tool_message(render *r, size_t i, const pj_value *content)
{
    if (i == 0 || !eq_str(r->m[i - 1].role, "tool")) put(r, "<|im_start|>user");
    put(r, "\n<tool_response>\n");
    pj_str(content, &r->out);
    put(r, "\n</tool_response>");
    if (i == r->n - 1 || !eq_str(r->m[i + 1].role, "tool")) put(r, "<|im_end|>\n");
}

static const pj_value empty_str = {.type = PJ_STR, .s = "", .n = 0};

/* ==== Qwen3-Next Instruct ===================================================================== */

static eng_status render_instruct(render *r)
{
    eng_status st = render_header(r);
    if (st != ENG_OK) return st;
    for (size_t i = 0; i < r->n; i++) {
        const msg *m = &r->m[i];
        const pj_value *content = is_str(m->content) ? m->content : &empty_str;
        if (eq_str(m->role, "user") || (eq_str(m->role, "system") && i != 0)) {
            put(r, "<|im_start|>");
            put_span(r, sp_val(m->role));
            put(r, "\n");
            put_span(r, sp_val(content));
            put(r, "<|im_end|>\n");
        } else if (eq_str(m->role, "assistant")) {
            put(r, "<|im_start|>assistant\n");
            put_span(r, sp_val(content));
            if ((st = render_tool_calls(r, i, m->tool_calls, content->n > 0)) != ENG_OK) return st;
            put(r, "<|im_end|>\n");
        } else if (eq_str(m->role, "tool")) {
            render_tool_message(r, i, content);
        }
    }
    if (r->add_gen) put(r, "<|im_start|>assistant\n");
    return ENG_OK;
}

/* ==== Qwen3-Next Thinking and Qwen3 hybrid ==================================================== */

/* ns.last_query_index: the last user message that is not a wrapped tool response. */
static eng_status last_query_index(const render *r, size_t *out)
{
    *out = r->n - 1;
    for (size_t k = r->n; k-- > 0;) {
        const msg *m = &r->m[k];
        if (!eq_str(m->role, "user")) continue;
        if (r->kind == ENG_TEMPLATE_THINKING) {
            if (!is_str(m->content)) continue; /* guarded by `message.content is string` */
        } else if (!is_str(m->content)) {
            /* hybrid: message.content.startswith(...) on a non-string */
            return hf_raise(r,
                            "messages[%zu]: a user message's content is %s; the template calls "
                            "content.startswith() on it (jinja2 UndefinedError)",
                            k, m->content->type == PJ_UNDEF ? "missing or null" : py_type(m->content));
        }
        span c = sp_val(m->content);
        if (!(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
            *out = k;
            break;
        }
    }
    return ENG_OK;
}

/* Reasoning split out of content: content.split('</think>')[0].rstrip('\n').split('<think>')[-1]
 * .lstrip('\n') and content.split('</think>')[-1].lstrip('\n'). */
static void split_think(span content, span *reasoning, span *rest)
{
    const char *first = find(content, "</think>");
    const char *last = rfind(content, "</think>");
    span before = rstrip_nl(sp(content.s, (size_t)(first - content.s)));
    const char *open = rfind(before, "<think>");
    if (open) before = sp(open + 7, before.n - (size_t)(open + 7 - before.s));
    *reasoning = lstrip_nl(before);
    const char *after = last + 8;
    *rest = lstrip_nl(sp(after, content.n - (size_t)(after - content.s)));
}

static eng_status render_assistant_thinking(render *r, size_t i, size_t lqi)
{
    const msg *m = &r->m[i];
    bool hybrid = r->kind == ENG_TEMPLATE_HYBRID;
    eng_status st;
    /* content, and reasoning as a value (the hybrid template keeps non-string reasoning as is) */
    const pj_value *content_v = hybrid ? m->content : (is_str(m->content) ? m->content : &empty_str);
    span content = {0};
    const pj_value *reasoning_v = &empty_str;
    span reasoning = {"", 0};
    bool split = false;
    if (hybrid ? m->reasoning->type != PJ_UNDEF : is_str(m->reasoning)) {
        reasoning_v = m->reasoning;
    } else {
        /* '</think>' in content */
        switch (content_v->type) {
        case PJ_STR:
            split = find(sp_val(content_v), "</think>") != NULL;
            break;
        case PJ_UNDEF:
            break;
        case PJ_OBJECT:
            if (pj_get(content_v, "</think>"))
                return hf_raise(
                    r,
                    "messages[%zu]: the content is a dict with a '</think>' key; the template calls "
                    "content.split() on it (jinja2 UndefinedError)",
                    i);
            break;
        default:
            return hf_raise(r, "messages[%zu]: `'</think>' in content` on a %s content (TypeError)", i,
                            py_type(content_v));
        }
    }
    if (split) {
        split_think(sp_val(content_v), &reasoning, &content);
    } else {
        if (is_str(content_v)) content = sp_val(content_v);
        if (is_str(reasoning_v)) reasoning = sp_val(reasoning_v);
    }
    bool reasoning_truthy = split ? reasoning.n > 0 : pj_truthy(reasoning_v);
    bool content_is_str = split || is_str(content_v);
    if (i > lqi && (i == r->n - 1 || reasoning_truthy)) {
        if (!split && !is_str(reasoning_v))
            return hf_raise(r,
                            "messages[%zu]: the reasoning is a %s; the template calls .strip() on it (jinja2 "
                            "UndefinedError)",
                            i, py_type(reasoning_v));
        if (!content_is_str)
            return hf_raise(
                r,
                "messages[%zu]: the assistant content is %s; the template calls .lstrip() on it (jinja2 "
                "UndefinedError)",
                i, content_v->type == PJ_UNDEF ? "missing or null" : py_type(content_v));
        put(r, "<|im_start|>assistant\n<think>\n");
        span rs = lstrip_nl(rstrip_nl(reasoning));
        put_span(r, rs);
        put(r, "\n</think>\n\n");
        put_span(r, lstrip_nl(content));
    } else {
        if (!content_is_str && (st = need_str(r, content_v, i, "assistant content")) != ENG_OK) return st;
        put(r, "<|im_start|>assistant\n");
        put_span(r, content);
    }
    if ((st = render_tool_calls(r, i, m->tool_calls, content.n > 0)) != ENG_OK) return st;
    put(r, "<|im_end|>\n");
    return ENG_OK;
}

static eng_status render_thinking(render *r)
{
    bool hybrid = r->kind == ENG_TEMPLATE_HYBRID;
    eng_status st = render_header(r);
    if (st != ENG_OK) return st;
    size_t lqi;
    if ((st = last_query_index(r, &lqi)) != ENG_OK) return st;
    for (size_t i = 0; i < r->n; i++) {
        const msg *m = &r->m[i];
        if (eq_str(m->role, "user") || (eq_str(m->role, "system") && i != 0)) {
            const pj_value *content = m->content;
            if (!hybrid)
                content = is_str(content) ? content : &empty_str;
            else if ((st = need_str(r, content, i, "content")) != ENG_OK)
                return st;
            put(r, "<|im_start|>");
            put_span(r, sp_val(m->role));
            put(r, "\n");
            put_span(r, sp_val(content));
            put(r, "<|im_end|>\n");
        } else if (eq_str(m->role, "assistant")) {
            if ((st = render_assistant_thinking(r, i, lqi)) != ENG_OK) return st;
        } else if (eq_str(m->role, "tool")) {
            /* thinking prints the `content` variable ('' unless a string); hybrid prints message.content */
            render_tool_message(r, i, hybrid ? m->content : (is_str(m->content) ? m->content : &empty_str));
        }
    }
    if (r->add_gen) {
        if (!hybrid)
            put(r, "<|im_start|>assistant\n<think>\n");
        else {
            put(r, "<|im_start|>assistant\n");
            if (r->thinking_off) put(r, "<think>\n\n</think>\n\n");
        }
    }
    return ENG_OK;
}

/* ==== entry points ============================================================================ */

static eng_status check_kwargs(const pj_value *kwargs, bool *thinking_off)
{
    *thinking_off = false;
    if (!kwargs || kwargs->type == PJ_NULL) return ENG_OK;
    if (kwargs->type != PJ_OBJECT)
        return eng_err_set(ENG_ERR_INVALID, "chat_template_kwargs: must be a JSON object");
    const pj_value *et = pj_get(kwargs, "enable_thinking");
    *thinking_off = et && et->type == PJ_BOOL && !et->b; /* `enable_thinking is false`: only False */
    return ENG_OK;
}

static eng_reasoning_start start_of(eng_template_kind kind, bool thinking_off, bool add_gen)
{
    if (!add_gen) return ENG_REASONING_NONE;
    switch (kind) {
    case ENG_TEMPLATE_THINKING:
        return ENG_REASONING_IN_THOUGHT;
    case ENG_TEMPLATE_HYBRID:
        return thinking_off ? ENG_REASONING_NONE : ENG_REASONING_MAY_OPEN;
    default:
        return ENG_REASONING_NONE;
    }
}

/* Renders from parsed values; `doc` receives the joined strings. */
static eng_status render_values(eng_template_kind kind, pj_doc *doc, const pj_value *messages,
                                const pj_value *tools, const pj_value *kwargs, bool add_gen,
                                eng_chat_prompt *out)
{
    render r = {.kind = kind, .doc = doc, .add_gen = add_gen};
    eng_buf_init(&r.out);
    eng_status st;
    if ((unsigned)kind >= ENG_TEMPLATE_COUNT) {
        st = eng_err_set(ENG_ERR_INVALID, "unknown template kind %d", (int)kind);
        goto out;
    }
    if ((st = check_kwargs(kwargs, &r.thinking_off)) != ENG_OK) goto out;
    if (tools && tools->type != PJ_NULL) {
        if (tools->type != PJ_ARRAY) {
            st = eng_err_set(ENG_ERR_INVALID, "tools: must be a JSON array of tool objects");
            goto out;
        }
        for (size_t t = 0; t < tools->n; t++) {
            if (tools->items[t].type != PJ_OBJECT) {
                st = eng_err_set(ENG_ERR_INVALID, "tools[%zu]: must be an object (a JSON schema), not a %s",
                                 t, py_type(&tools->items[t]));
                goto out;
            }
        }
        r.tools = tools;
    }
    if ((st = prepare_messages(&r, messages)) != ENG_OK) goto out;
    st = kind == ENG_TEMPLATE_INSTRUCT ? render_instruct(&r) : render_thinking(&r);
    if (st != ENG_OK) goto out;
    if (r.out.oom) {
        st = nomem();
        goto out;
    }
    if (!eng_buf_cstr(&r.out)) {
        st = nomem();
        goto out;
    }
    out->len = r.out.len;
    out->text = eng_buf_take(&r.out, NULL);
    if (!out->text) st = nomem();
    out->reasoning = start_of(kind, r.thinking_off, add_gen);
out:
    eng_buf_free(&r.out);
    return st;
}

static eng_status parse_opt(const char *json, const char *what, pj_doc **doc, const pj_value **v)
{
    *doc = NULL;
    *v = NULL;
    if (!json) return ENG_OK;
    return pj_parse(json, strlen(json), what, doc, v);
}

eng_status eng_chat_render(eng_template_kind kind, const char *messages_json, const char *tools_json,
                           const char *kwargs_json, bool add_generation_prompt, char **out, size_t *len)
{
    pj_doc *dm = NULL, *dt = NULL, *dk = NULL;
    const pj_value *m, *t, *k;
    eng_chat_prompt p = {0};
    eng_status st;
    if (!out || !len) return eng_err_set(ENG_ERR_INVALID, "eng_chat_render: NULL output pointer");
    *out = NULL;
    *len = 0;
    if (!messages_json) return eng_err_set(ENG_ERR_INVALID, "messages: missing");
    if ((st = parse_opt(messages_json, "messages", &dm, &m)) != ENG_OK) goto out;
    if ((st = parse_opt(tools_json, "tools", &dt, &t)) != ENG_OK) goto out;
    if ((st = parse_opt(kwargs_json, "chat_template_kwargs", &dk, &k)) != ENG_OK) goto out;
    st = render_values(kind, dm, m, t, k, add_generation_prompt, &p);
    if (st == ENG_OK) {
        *out = p.text;
        *len = p.len;
    }
out:
    pj_doc_destroy(dm);
    pj_doc_destroy(dt);
    pj_doc_destroy(dk);
    return st;
}

eng_status eng_chat_render_request(eng_template_kind kind, const char *body, size_t body_len,
                                   bool add_generation_prompt, eng_chat_prompt *out)
{
    pj_doc *doc = NULL;
    const pj_value *root;
    if (!out) return eng_err_set(ENG_ERR_INVALID, "eng_chat_render_request: NULL output pointer");
    memset(out, 0, sizeof *out);
    eng_status st = pj_parse(body, body_len, "request body", &doc, &root);
    if (st != ENG_OK) return st;
    if (root->type != PJ_OBJECT) {
        st = eng_err_set(ENG_ERR_INVALID, "request body: must be a JSON object with \"messages\"");
        goto out;
    }
    const pj_value *messages = pj_get(root, "messages");
    if (!messages) {
        st = eng_err_set(ENG_ERR_INVALID, "request body: no \"messages\" field");
        goto out;
    }
    st = render_values(kind, doc, messages, pj_get(root, "tools"), pj_get(root, "chat_template_kwargs"),
                       add_generation_prompt, out);
out:
    pj_doc_destroy(doc);
    return st;
}

eng_status eng_chat_reasoning_start(eng_template_kind kind, const char *kwargs_json,
                                    bool add_generation_prompt, eng_reasoning_start *out)
{
    pj_doc *doc = NULL;
    const pj_value *k = NULL;
    bool off = false;
    eng_status st = parse_opt(kwargs_json, "chat_template_kwargs", &doc, &k);
    if (st == ENG_OK) st = check_kwargs(k, &off);
    if (st == ENG_OK) *out = start_of(kind, off, add_generation_prompt);
    pj_doc_destroy(doc);
    return st;
}

void eng_chat_free(char *s)
{
    eng_free(s);
}

void eng_chat_prompt_free(eng_chat_prompt *p)
{
    if (!p) return;
    eng_free(p->text);
    memset(p, 0, sizeof *p);
}
