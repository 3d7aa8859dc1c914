#!/usr/bin/env python3
"""openapi_gen.py - writes rest_gateway/openapi.json, the OpenAPI 3.0 description of qnext-gateway.

The document is the source the gateway serves at GET /openapi.json (embedded at build time by
embed.cmake). Its request schemas carry the limits openai_request.c enforces (n <= 128, <= 4 stop
strings, top_logprobs <= 20, temperature 0..2, ...), so that schemathesis generates meaningful
requests; keep both in step. Run: python3 rest_gateway/openapi_gen.py > rest_gateway/openapi.json
(tests/e2e/test_gw_ops.py checks that the served document equals this script's output).
"""
import json
I32 = 2147483647
def ref(n): return {"$ref": "#/components/schemas/" + n}
def nn(s): s = dict(s); s["nullable"] = True; return s
err_codes = {"400": "Invalid request (the message and `param` name the field)", "401": "Missing or wrong API key",
             "404": "Unknown model or route", "413": "Request body too large",
             "429": "Overloaded: retry after the Retry-After header", "500": "Server error",
             "503": "No engine available, or shutting down: retry after Retry-After", "504": "Upstream deadline exceeded"}
def errors(*codes):
    out = {}
    for c in codes:
        r = {"description": err_codes[c], "content": {"application/json": {"schema": ref("ErrorResponse")}}}
        if c in ("429", "503"):
            r["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "description": "seconds"}}
        out[c] = r
    return out

text_part = {"type": "object", "additionalProperties": False, "required": ["type", "text"],
             "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}
content = {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "maxItems": 1024, "items": text_part}]}
name = {"type": "string", "maxLength": 256}
schemas = {
 "ErrorResponse": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
   "required": ["message", "type", "param", "code"], "properties": {
     "message": {"type": "string"}, "type": {"type": "string"}, "param": nn({"type": "string"}),
     "code": nn({"type": "string"})}}}},
 "SystemMessage": {"type": "object", "additionalProperties": False, "required": ["role", "content"],
   "properties": {"role": {"type": "string", "enum": ["system", "developer"]}, "content": content, "name": name}},
 "UserMessage": {"type": "object", "additionalProperties": False, "required": ["role", "content"],
   "properties": {"role": {"type": "string", "enum": ["user"]}, "content": content, "name": name}},
 "AssistantMessage": {"type": "object", "additionalProperties": False, "required": ["role"],
   "properties": {"role": {"type": "string", "enum": ["assistant"]},
     "content": nn({"oneOf": [{"type": "string"}, {"type": "array", "maxItems": 1024, "items": text_part}]}),
     "name": name, "refusal": nn({"type": "string"}),
     "reasoning_content": nn({"type": "string", "description": "reasoning of an earlier turn (passed to the chat template)"}),
     "tool_calls": nn({"type": "array", "maxItems": 128, "items": ref("MessageToolCall")})}},
 "ToolMessage": {"type": "object", "additionalProperties": False, "required": ["role", "content", "tool_call_id"],
   "properties": {"role": {"type": "string", "enum": ["tool"]}, "content": content,
     "tool_call_id": {"type": "string"}, "name": name}},
 "MessageToolCall": {"type": "object", "additionalProperties": False, "required": ["function"],
   "properties": {"id": {"type": "string"}, "type": {"type": "string", "enum": ["function"]},
     "function": {"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
       "properties": {"name": {"type": "string"}, "arguments": {"type": "string", "description": "JSON text"}}}}},
 "Tool": {"type": "object", "additionalProperties": False, "required": ["type", "function"],
   "properties": {"type": {"type": "string", "enum": ["function"]},
     "function": {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
       "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
       "description": {"type": "string"}, "parameters": {"type": "object"},
       "strict": nn({"type": "boolean", "enum": [False], "description": "strict (schema-constrained) calls are not supported"})}}}},
 "Stop": {"description": "up to 4 stop strings", "oneOf": [{"type": "string", "minLength": 1, "maxLength": 256},
   {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1, "maxLength": 256}}]},
 "StreamOptions": {"type": "object", "additionalProperties": False, "properties": {
   "include_usage": nn({"type": "boolean"}), "include_obfuscation": nn({"type": "boolean"})}},
 "LogitBias": {"type": "object", "maxProperties": 1024, "description": "token id (decimal string, below the vocabulary size) -> bias",
   "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
   "propertyNames": {"pattern": "^[0-9]{1,9}$"}},
 "Usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"], "properties": {
   "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"},
   "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer"}}},
   "completion_tokens_details": {"type": "object", "properties": {"reasoning_tokens": {"type": "integer"}}}}},
 "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
   "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]}, "created": {"type": "integer"},
   "model": {"type": "string"}, "usage": ref("Usage"),
   "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message", "logprobs", "finish_reason"],
     "properties": {"index": {"type": "integer"}, "finish_reason": {"type": "string"},
       "logprobs": nn({"type": "object"}),
       "message": {"type": "object", "required": ["role", "content", "refusal"], "properties": {
         "role": {"type": "string", "enum": ["assistant"]}, "content": nn({"type": "string"}),
         "refusal": nn({"type": "string"}), "reasoning_content": {"type": "string"},
         "tool_calls": {"type": "array", "items": {"type": "object", "required": ["id", "type", "function"]}}}}}}}}},
 "Completion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
   "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]}, "created": {"type": "integer"},
   "model": {"type": "string"}, "usage": ref("Usage"),
   "choices": {"type": "array", "items": {"type": "object", "required": ["text", "index", "logprobs", "finish_reason"],
     "properties": {"text": {"type": "string"}, "index": {"type": "integer"}, "finish_reason": {"type": "string"},
       "logprobs": nn({"type": "object", "properties": {"tokens": {"type": "array", "items": {"type": "string"}},
         "token_logprobs": {"type": "array", "items": {"type": "number"}},
         "top_logprobs": {"type": "array", "items": {"type": "object"}},
         "text_offset": {"type": "array", "items": {"type": "integer"}}}})}}}}},
 "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
   "id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]}, "created": {"type": "integer"},
   "owned_by": {"type": "string"}, "max_model_len": {"type": "integer"}}},
 "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
   "object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": ref("Model")}}},
}
common = {
 "model": {"type": "string", "maxLength": 256, "description": "must be the served model name (GET /v1/models), else 404"},
 "stream": nn({"type": "boolean"}),
 "stream_options": nn(dict(ref("StreamOptions"))) if False else {"allOf": [ref("StreamOptions")], "nullable": True,
     "description": "only with stream: true"},
 "temperature": nn({"type": "number", "minimum": 0, "maximum": 2}),
 "top_p": nn({"type": "number", "minimum": 0, "maximum": 1}),
 "top_k": nn({"type": "integer", "minimum": -1, "maximum": I32, "description": "0 or -1: off (vLLM extension)"}),
 "min_p": nn({"type": "number", "minimum": 0, "maximum": 1}),
 "repetition_penalty": nn({"type": "number", "minimum": 0.01, "maximum": 10}),
 "presence_penalty": nn({"type": "number", "minimum": -2, "maximum": 2}),
 "frequency_penalty": nn({"type": "number", "minimum": -2, "maximum": 2}),
 "seed": nn({"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807}),
 "n": nn({"type": "integer", "minimum": 1, "maximum": 128}),
 "stop": {"allOf": [ref("Stop")], "nullable": True},
 "stop_token_ids": nn({"type": "array", "maxItems": 256, "items": {"type": "integer", "minimum": 0, "maximum": I32}}),
 "logit_bias": {"allOf": [ref("LogitBias")], "nullable": True},
 "user": nn({"type": "string", "maxLength": 512}),
 "min_tokens": nn({"type": "integer", "minimum": 0, "maximum": I32, "description": "vLLM extension; at most max_tokens"}),
 "ignore_eos": nn({"type": "boolean"}),
 "skip_special_tokens": nn({"type": "boolean"}),
 "max_tokens": nn({"type": "integer", "minimum": 1, "maximum": I32}),
}
chat_props = dict(common)
chat_props.update({
 "messages": {"type": "array", "minItems": 1, "maxItems": 4096, "items": {"oneOf": [
     ref("SystemMessage"), ref("UserMessage"), ref("AssistantMessage"), ref("ToolMessage")]}},
 "max_completion_tokens": nn({"type": "integer", "minimum": 1, "maximum": I32, "description": "wins over max_tokens"}),
 "logprobs": nn({"type": "boolean"}),
 "top_logprobs": nn({"type": "integer", "minimum": 0, "maximum": 20, "description": "needs logprobs: true"}),
 "tools": nn({"type": "array", "maxItems": 512, "items": ref("Tool")}),
 "tool_choice": nn({"type": "string", "enum": ["none", "auto"], "description": "'required' and named functions are not supported (400)"}),
 "parallel_tool_calls": nn({"type": "boolean"}),
 "response_format": nn({"type": "object", "additionalProperties": False, "required": ["type"],
     "properties": {"type": {"type": "string", "enum": ["text"]}}, "description": "json_object / json_schema are not supported (400)"}),
 "chat_template_kwargs": nn({"type": "object", "description": "passed to the chat template, e.g. {\"enable_thinking\": false}"}),
 "safety_identifier": nn({"type": "string", "maxLength": 512}),
 "prompt_cache_key": nn({"type": "string", "maxLength": 512}),
 "store": nn({"type": "boolean", "enum": [False]}),
 "modalities": nn({"type": "array", "items": {"type": "string", "enum": ["text"]}}),
 "service_tier": nn({"type": "string", "enum": ["auto", "default"]}),
})
comp_props = dict(common)
comp_props.update({
 "prompt": {"oneOf": [{"type": "string"},
     {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string"}},
     {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": I32}},
     {"type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "array", "minItems": 1,
         "items": {"type": "integer", "minimum": 0, "maximum": I32}}}],
     "description": "text, texts, token ids, or lists of token ids (ids below the vocabulary size); n x prompts <= 128"},
 "max_tokens": nn({"type": "integer", "minimum": 1, "maximum": I32, "default": 16}),
 "logprobs": nn({"type": "integer", "minimum": 0, "maximum": 5}),
 "echo": nn({"type": "boolean", "description": "text prompts only; not with logprobs"}),
 "suffix": nn({"type": "string", "maxLength": 0, "description": "insertion is not supported: only \"\""}),
 "best_of": nn({"type": "integer", "minimum": 1, "maximum": 1}),
})
schemas["ChatCompletionRequest"] = {"type": "object", "additionalProperties": False, "required": ["model", "messages"],
    "properties": chat_props}
schemas["CompletionRequest"] = {"type": "object", "additionalProperties": False, "required": ["model", "prompt"],
    "properties": comp_props}

def post(summary, req, resp):
    return {"post": {"summary": summary, "security": [{"bearerAuth": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(req)}}},
        "responses": dict({"200": {"description": "The result (JSON), or an SSE stream when stream is true",
            "content": {"application/json": {"schema": ref(resp)},
                        "text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
                "data": {"type": "string", "description": "a JSON chunk, an error object, or [DONE]"}}}}}}},
            **errors("400", "401", "404", "413", "429", "500", "503", "504"))}}

doc = {"openapi": "3.0.3",
 "info": {"title": "qnext-gateway", "version": "0.1.0",
   "description": "OpenAI-compatible REST/SSE gateway of qnext. Request schemas carry the limits the gateway enforces; "
                  "fields not listed are rejected with 400."},
 "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
 "paths": {
  "/v1/chat/completions": post("Chat completion (OpenAI Chat Completions API)", "ChatCompletionRequest", "ChatCompletion"),
  "/v1/completions": post("Text completion (legacy OpenAI Completions API)", "CompletionRequest", "Completion"),
  "/v1/models": {"get": {"summary": "The served model", "security": [{"bearerAuth": []}], "responses": dict(
      {"200": {"description": "list", "content": {"application/json": {"schema": ref("ModelList")}}}},
      **errors("401", "503"))}},
  "/v1/models/{model}": {"get": {"summary": "One model", "security": [{"bearerAuth": []}],
      "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
      "responses": dict({"200": {"description": "model", "content": {"application/json": {"schema": ref("Model")}}}},
      **errors("401", "404", "503"))}},
  "/health": {"get": {"summary": "Liveness: the process is up", "responses": {"200": {"description": "up",
      "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}}}},
  "/ready": {"get": {"summary": "Readiness: an engine is reachable and SERVING, and the gateway is not draining",
      "responses": dict({"200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object",
          "properties": {"status": {"type": "string"}}}}}}}, **errors("503"))}},
  "/metrics": {"get": {"summary": "Prometheus metrics (vLLM names where the meaning is the same)", "responses": dict(
      {"200": {"description": "text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}},
      **errors("401"))}},
  "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.0",
      "content": {"application/json": {"schema": {"type": "object"}}}}}}},
 }}
print(json.dumps(doc, indent=1))
