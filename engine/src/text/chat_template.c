/* text/chat_template.c - the known chat templates: their exact Jinja text, names, and detection of
 * which one a model folder ships (qnext/chat.h).
 *
 * The texts below are the byte-exact templates of tests/fixtures/tokenizer (Qwen3-Next Instruct and
 * Thinking, and the `chat_template` of the Qwen3 tokenizer_config.json); test_chat_template checks
 * them against those files. Detection compares a model's template with them: exactly, then with
 * trailing whitespace removed from both (editors and `save_pretrained` may add a final newline).
 */
#include "qnext/chat.h"

#include "core/core.h"   /* eng_file_read, eng_path_join, eng_dir_exists */
#include "text/pyjson.h" /* pj_parse for tokenizer_config.json */

#include <string.h>
#include <sys/stat.h>

/* ==== the template texts ====================================================================== */

static const char tpl_instruct[] =
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.content is string %}\n"
    "        {%- set content = message.content %}\n"
    "    {%- else %}\n"
    "        {%- set content = '' %}\n"
    "    {%- endif %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n"
    "                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}";

static const char tpl_thinking[] =
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == \"user\" and message.content is string and "
    "not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}\n"
    "        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.content is string %}\n"
    "        {%- set content = message.content %}\n"
    "    {%- else %}\n"
    "        {%- set content = '' %}\n"
    "    {%- endif %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is string %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n"
    "        {%- else %}\n"
    "            {%- if '</think>' in content %}\n"
    "                {%- set reasoning_content = "
    "content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
    "                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}\n"
    "            {%- endif %}\n"
    "        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + "
    "'\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "            {%- else %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "            {%- endif %}\n"
    "        {%- else %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- endif %}\n"
    "        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n"
    "                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n<think>\\n' }}\n"
    "{%- endif %}";

static const char tpl_hybrid[] =
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == \"user\" and "
    "not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}\n"
    "        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {%- set content = message.content %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n"
    "        {%- else %}\n"
    "            {%- if '</think>' in message.content %}\n"
    "                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "                {%- set reasoning_content = "
    "message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
    "            {%- endif %}\n"
    "        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + "
    "'\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "            {%- else %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "            {%- endif %}\n"
    "        {%- else %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- endif %}\n"
    "        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n"
    "                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}";

static const struct {
    const char *name;
    const char *source;
    const char *what;
} known[ENG_TEMPLATE_COUNT] = {
    [ENG_TEMPLATE_INSTRUCT] = {"instruct", tpl_instruct, "Qwen3-Next Instruct"},
    [ENG_TEMPLATE_THINKING] = {"thinking", tpl_thinking, "Qwen3-Next Thinking"},
    [ENG_TEMPLATE_HYBRID] = {"hybrid", tpl_hybrid, "Qwen3 hybrid with enable_thinking"},
};

const char *eng_template_name(eng_template_kind kind)
{
    return (unsigned)kind < ENG_TEMPLATE_COUNT ? known[kind].name : "?";
}

const char *eng_template_source(eng_template_kind kind)
{
    return (unsigned)kind < ENG_TEMPLATE_COUNT ? known[kind].source : NULL;
}

eng_status eng_template_parse(const char *name, eng_template_kind *out)
{
    for (int k = 0; k < ENG_TEMPLATE_COUNT; k++) {
        if (name && !strcmp(name, known[k].name)) {
            *out = (eng_template_kind)k;
            return ENG_OK;
        }
    }
    return eng_err_set(ENG_ERR_INVALID, "unknown chat template '%s': use instruct, thinking or hybrid",
                       name ? name : "(null)");
}

/* ==== detection =============================================================================== */

#define MAX_TEMPLATE_FILE (16u << 20)

static size_t rstrip_len(const char *s, size_t n)
{
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' ||
                 s[n - 1] == '\f' || s[n - 1] == '\v'))
        n--;
    return n;
}

static eng_status match_known(const char *where, const char *text, size_t len, eng_template_kind *out)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < ENG_TEMPLATE_COUNT; k++) {
            const char *src = known[k].source;
            size_t sl = strlen(src), tl = len;
            if (pass) {
                sl = rstrip_len(src, sl);
                tl = rstrip_len(text, tl);
            }
            if (sl == tl && memcmp(src, text, sl) == 0) {
                *out = (eng_template_kind)k;
                return ENG_OK;
            }
        }
    }
    return eng_err_set(ENG_ERR_UNSUPPORTED,
                       "%s: the chat template (%zu bytes) is none of the templates qnext renders natively "
                       "(instruct = %s, thinking = %s, hybrid = %s); choose one with --template "
                       "instruct|thinking|hybrid if the model really uses one of them",
                       where, len, known[0].what, known[1].what, known[2].what);
}

/* The template text inside a tokenizer_config.json (a string, or HF's [{name, template}] list). */
static eng_status template_from_config(const char *path, const char *json, size_t len, eng_template_kind *out)
{
    pj_doc *doc = NULL;
    const pj_value *root;
    eng_status st = pj_parse(json, len, path, &doc, &root);
    if (st != ENG_OK) {
        if (st == ENG_ERR_INVALID) st = eng_err_wrap(ENG_ERR_FORMAT, "not valid JSON");
        goto out;
    }
    const pj_value *t = pj_get(root, "chat_template");
    if (!t || t->type == PJ_NULL) {
        st = eng_err_set(ENG_ERR_NOT_FOUND, "%s: no \"chat_template\" field", path);
        goto out;
    }
    if (t->type == PJ_ARRAY) {
        const pj_value *found = NULL;
        for (size_t i = 0; i < t->n; i++) {
            const pj_value *nm = pj_get(&t->items[i], "name");
            if (nm && nm->type == PJ_STR && nm->n == 7 && !memcmp(nm->s, "default", 7))
                found = pj_get(&t->items[i], "template");
        }
        if (!found) {
            st = eng_err_set(ENG_ERR_UNSUPPORTED,
                             "%s: \"chat_template\" is a list of named templates without "
                             "one named \"default\"; choose one with --template instruct|thinking|hybrid",
                             path);
            goto out;
        }
        t = found;
    }
    if (t->type != PJ_STR) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: \"chat_template\" is not a string", path);
        goto out;
    }
    st = match_known(path, t->s, t->n, out);
out:
    pj_doc_destroy(doc);
    return st;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

eng_status eng_template_detect(const char *path, eng_template_kind *out)
{
    eng_status st;
    char *data = NULL, *jinja = NULL, *cfg = NULL;
    size_t len = 0;
    if (!path || !out) return eng_err_set(ENG_ERR_INVALID, "eng_template_detect: NULL argument");
    if (!eng_dir_exists(path)) {
        if (!eng_file_exists(path)) return eng_err_set(ENG_ERR_NOT_FOUND, "%s: no such file or folder", path);
        st = eng_file_read(path, MAX_TEMPLATE_FILE, &data, &len);
        if (st != ENG_OK) goto out;
        if (ends_with(path, ".json"))
            st = template_from_config(path, data, len, out);
        else
            st = match_known(path, data, len, out);
        goto out;
    }
    jinja = eng_path_join(path, "chat_template.jinja");
    cfg = eng_path_join(path, "tokenizer_config.json");
    if (!jinja || !cfg) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (eng_file_exists(jinja)) { /* transformers prefers it over tokenizer_config.json */
        st = eng_file_read(jinja, MAX_TEMPLATE_FILE, &data, &len);
        if (st == ENG_OK) st = match_known(jinja, data, len, out);
    } else if (eng_file_exists(cfg)) {
        st = eng_file_read(cfg, MAX_TEMPLATE_FILE, &data, &len);
        if (st == ENG_OK) st = template_from_config(cfg, data, len, out);
    } else {
        st = eng_err_set(ENG_ERR_NOT_FOUND,
                         "%s: no chat_template.jinja or tokenizer_config.json; choose a template "
                         "with --template instruct|thinking|hybrid",
                         path);
    }
out:
    eng_free(data);
    eng_free(jinja);
    eng_free(cfg);
    return st;
}
