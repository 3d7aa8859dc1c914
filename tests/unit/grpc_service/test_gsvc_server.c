/* tests/unit/grpc_service/test_gsvc_server.c - the whole server in-process (grpc_service/server.c,
 * rpc_*.c) with the fake engine, driven over loopback by a small gRPC C-core client: streaming,
 * unary calls, health, bad bytes, cancellation freeing the engine slot, queue-full with its
 * retry-after-ms hint, drain and shutdown. The Python e2e suite covers the same surface from an
 * independent client; this one runs under ctest, so the ASan build checks the server code too. */
#include "server.h"
#include "util.h"
#include "wire.h"

#include "grpc/health/v1/health.pb-c.h"
#include "qnext/v1/generator.pb-c.h"

#include <check.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static gsvc_server *srv;
static grpc_channel *chan;
static char model_dir[64];

/* ==== a small client ========================================================================== */

typedef struct reply {
    grpc_status_code status;
    char details[512];
    char retry_after[32]; /* trailing retry-after-ms, "" if none */
} reply;

static gpr_timespec in_ms(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_call *new_call(grpc_completion_queue *cq, const char *method, int deadline_ms)
{
    grpc_slice m = grpc_slice_from_static_string(method);
    grpc_call *c = grpc_channel_create_call(chan, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, in_ms(deadline_ms), NULL);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void run_batch(grpc_completion_queue *cq, grpc_call *c, grpc_op *ops, size_t n, void *tag)
{
    ck_assert_int_eq(grpc_call_start_batch(c, ops, n, tag, NULL), GRPC_CALL_OK);
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, in_ms(20000), NULL);
    ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
}

static grpc_byte_buffer *pack_raw(const void *p, size_t n)
{
    grpc_slice s = grpc_slice_from_copied_buffer(p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static grpc_byte_buffer *pack_msg(const ProtobufCMessage *m)
{
    uint8_t *buf = malloc(protobuf_c_message_get_packed_size(m) + 1);
    size_t n = protobuf_c_message_pack(m, buf);
    grpc_byte_buffer *bb = pack_raw(buf, n);
    free(buf);
    return bb;
}

/* A server-streaming or unary call in progress. */
typedef struct stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array md_in, trailing;
    grpc_status_code status;
    grpc_slice details;
    bool status_started;
} stream;

static void stream_start(stream *s, const char *method, grpc_byte_buffer *req, int deadline_ms)
{
    memset(s, 0, sizeof *s);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = new_call(s->cq, method, deadline_ms);
    grpc_metadata_array_init(&s->md_in);
    grpc_metadata_array_init(&s->trailing);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    run_batch(s->cq, s->call, ops, 3, (void *)1);
    grpc_byte_buffer_destroy(req);
    /* Messages are delivered only once initial metadata was received, which the server sends with
     * its first message (or its status): ask for it in a batch of its own, plucked at the end. */
    grpc_op md;
    memset(&md, 0, sizeof md);
    md.op = GRPC_OP_RECV_INITIAL_METADATA;
    md.data.recv_initial_metadata.recv_initial_metadata = &s->md_in;
    ck_assert_int_eq(grpc_call_start_batch(s->call, &md, 1, (void *)4, NULL), GRPC_CALL_OK);
    /* the status op completes last; start it now so a server-side end is always observed */
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &s->trailing;
    st.data.recv_status_on_client.status = &s->status;
    st.data.recv_status_on_client.status_details = &s->details;
    ck_assert_int_eq(grpc_call_start_batch(s->call, &st, 1, (void *)2, NULL), GRPC_CALL_OK);
    s->status_started = true;
}

/* Next message unpacked with d, or NULL at the end of the stream. */
static ProtobufCMessage *stream_read(stream *s, const ProtobufCMessageDescriptor *d)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    run_batch(s->cq, s->call, &op, 1, (void *)3);
    if (!bb) return NULL;
    ProtobufCMessage *m;
    eng_status st = gsvc_unpack_bb(d, bb, &m);
    grpc_byte_buffer_destroy(bb);
    ck_assert_int_eq(st, ENG_OK);
    return m;
}

/* Waits for the status; fills r and frees the call. */
static void stream_finish(stream *s, reply *r)
{
    grpc_event ev = grpc_completion_queue_pluck(s->cq, (void *)2, in_ms(20000), NULL);
    ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
    ev = grpc_completion_queue_pluck(s->cq, (void *)4, in_ms(20000), NULL);
    ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
    memset(r, 0, sizeof *r);
    r->status = s->status;
    size_t n = GRPC_SLICE_LENGTH(s->details);
    if (n >= sizeof r->details) n = sizeof r->details - 1;
    memcpy(r->details, GRPC_SLICE_START_PTR(s->details), n);
    for (size_t i = 0; i < s->trailing.count; i++)
        if (grpc_slice_str_cmp(s->trailing.metadata[i].key, "retry-after-ms") == 0) {
            size_t k = GRPC_SLICE_LENGTH(s->trailing.metadata[i].value);
            if (k >= sizeof r->retry_after) k = sizeof r->retry_after - 1;
            memcpy(r->retry_after, GRPC_SLICE_START_PTR(s->trailing.metadata[i].value), k);
        }
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->md_in);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(s->cq);
}

/* One unary call; *out gets the reply message (or NULL on a non-OK status). */
static void unary(const char *method, grpc_byte_buffer *req, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                  reply *r)
{
    stream s;
    stream_start(&s, method, req, 10000);
    *out = stream_read(&s, d);
    if (*out) ck_assert_ptr_null(stream_read(&s, d));
    stream_finish(&s, r);
}

static Qnext__V1__Load *get_load(void)
{
    Qnext__V1__GetLoadRequest q = QNEXT__V1__GET_LOAD_REQUEST__INIT;
    ProtobufCMessage *m;
    reply r;
    unary("/qnext.v1.Generator/GetLoad", pack_msg(&q.base), &qnext__v1__load__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    return (Qnext__V1__Load *)m;
}

static int health(const char *service, reply *r)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)service;
    ProtobufCMessage *m;
    unary("/grpc.health.v1.Health/Check", pack_msg(&q.base), &grpc__health__v1__health_check_response__descriptor, &m, r);
    int st = m ? (int)((Grpc__Health__V1__HealthCheckResponse *)m)->status : -1;
    gsvc_msg_free(m);
    return st;
}

static grpc_byte_buffer *prompt_req(const char *prompt, int max_tokens, const char *request_id)
{
    Qnext__V1__GenerateRequest q = QNEXT__V1__GENERATE_REQUEST__INIT;
    Qnext__V1__StopParams st = QNEXT__V1__STOP_PARAMS__INIT;
    q.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_PROMPT;
    q.prompt = (char *)prompt;
    if (request_id) q.request_id = (char *)request_id;
    if (max_tokens > 0) {
        st.max_tokens_opt_case = QNEXT__V1__STOP_PARAMS__MAX_TOKENS_OPT_MAX_TOKENS;
        st.max_tokens = max_tokens;
        st.ignore_eos = true; /* exactly max_tokens (or the context), no natural end of the fake */
        q.stop = &st;
    }
    return pack_msg(&q.base);
}

/* ==== fixture ================================================================================= */

static void start_server(const char *step_ms, int max_running, int max_queue)
{
    setenv("QNEXT_FAKE_STEP_MS", step_ms, 1);
    snprintf(model_dir, sizeof model_dir, "/tmp/gsvc-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(model_dir));
    gsvc_options o;
    gsvc_options_init(&o);
    o.eng.model_dir = model_dir;
    o.eng.max_running = max_running;
    o.eng.max_queue = max_queue;
    o.listen = "127.0.0.1:0";
    o.retry_after_ms = 321;
    o.grace_s = 5;
    ck_assert_int_eq(gsvc_server_create(&o, &srv), ENG_OK);
    ck_assert_int_gt(gsvc_server_port(srv), 0);
    ck_assert_int_eq(gsvc_server_start(srv), ENG_OK);
    for (int i = 0; i < 500 && !gsvc_server_loaded(srv); i++) usleep(10000);
    ck_assert(gsvc_server_loaded(srv));
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", gsvc_server_port(srv));
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    chan = grpc_channel_create(target, cr, NULL);
    grpc_channel_credentials_release(cr);
}

static void teardown(void)
{
    if (chan) grpc_channel_destroy(chan);
    chan = NULL;
    gsvc_server_shutdown(srv);
    gsvc_server_destroy(srv);
    srv = NULL;
    rmdir(model_dir);
}

static void setup_fast(void)
{
    start_server("0", 64, 1024);
}

static void setup_slow(void)
{
    start_server("20", 1, 1);
}

/* ==== tests =================================================================================== */

START_TEST(test_generate_stream)
{
    stream s;
    stream_start(&s, "/qnext.v1.Generator/Generate", prompt_req("Hello", 6, "my-req"), 10000);
    size_t tokens = 0;
    int finals = 0;
    ProtobufCMessage *m;
    while ((m = stream_read(&s, &qnext__v1__generate_response__descriptor))) {
        const Qnext__V1__GenerateResponse *r = (const Qnext__V1__GenerateResponse *)m;
        ck_assert_str_eq(r->request_id, "my-req");
        ck_assert_uint_eq(r->choice, 0);
        if (r->kind_case == QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA) {
            ck_assert_int_eq(finals, 0);
            tokens += r->delta->n_token_ids;
            ck_assert_uint_gt(strlen(r->delta->text), 0);
        } else {
            ck_assert_int_eq(r->kind_case, QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL);
            ck_assert_int_eq(r->final->finish_reason, QNEXT__V1__FINISH_REASON__FINISH_REASON_LENGTH);
            ck_assert_int_eq(r->final->usage->completion_tokens, 6);
            ck_assert_int_eq(r->final->usage->prompt_tokens, 5);
            finals++;
        }
        gsvc_msg_free(m);
    }
    reply r;
    stream_finish(&s, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert_uint_eq(tokens, 6);
    ck_assert_int_eq(finals, 1);
}
END_TEST

START_TEST(test_unary_and_health)
{
    reply r;
    ck_assert_int_eq(health("", &r), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    ck_assert_int_eq(health("qnext.v1.Generator", &r), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    ck_assert_int_eq(health("nope", &r), -1);
    ck_assert_int_eq(r.status, GRPC_STATUS_NOT_FOUND);

    Qnext__V1__GetModelInfoRequest q = QNEXT__V1__GET_MODEL_INFO_REQUEST__INIT;
    ProtobufCMessage *m;
    unary("/qnext.v1.Generator/GetModelInfo", pack_msg(&q.base), &qnext__v1__model_info__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    const Qnext__V1__ModelInfo *mi = (const Qnext__V1__ModelInfo *)m;
    ck_assert_str_eq(mi->model_id, strrchr(model_dir, '/') + 1);
    ck_assert_int_eq(mi->max_model_len, 4096);
    ck_assert_int_gt(mi->created_unix, 1600000000);
    gsvc_msg_free(m);

    /* no tokenizer.json in the model folder: the fake engine has no tokenizer */
    Qnext__V1__TokenizeRequest t = QNEXT__V1__TOKENIZE_REQUEST__INIT;
    t.input_case = QNEXT__V1__TOKENIZE_REQUEST__INPUT_TEXT;
    t.text = "hi";
    unary("/qnext.v1.Generator/Tokenize", pack_msg(&t.base), &qnext__v1__tokenize_response__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNIMPLEMENTED);

    /* a path nobody registered is answered at once, not left to its deadline */
    unary("/qnext.v1.Generator/NoSuchMethod", pack_raw("", 0), &qnext__v1__load__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNIMPLEMENTED);
    ck_assert_str_eq(r.details, "unknown method /qnext.v1.Generator/NoSuchMethod");

    Qnext__V1__AbortRequest a = QNEXT__V1__ABORT_REQUEST__INIT;
    a.request_id = "nothing-running";
    unary("/qnext.v1.Generator/Abort", pack_msg(&a.base), &qnext__v1__abort_response__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert(!((Qnext__V1__AbortResponse *)m)->found);
    gsvc_msg_free(m);
}
END_TEST

START_TEST(test_bad_requests)
{
    reply r;
    ProtobufCMessage *m;
    static const unsigned char garbage[] = {0x12, 0x05, 0x61};
    unary("/qnext.v1.Generator/Generate", pack_raw(garbage, sizeof garbage), &qnext__v1__generate_response__descriptor, &m,
          &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(r.details, "malformed GenerateRequest"));
    unary("/qnext.v1.Generator/GetLoad", pack_raw(garbage, sizeof garbage), &qnext__v1__load__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_INVALID_ARGUMENT);
    unary("/qnext.v1.Generator/Generate", prompt_req("", 0, NULL), &qnext__v1__generate_response__descriptor, &m, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(r.details, "prompt: empty");
    /* oversize: more than the 4 MiB receive limit */
    size_t big = (4u << 20) + 100;
    char *p = malloc(big + 1);
    memset(p, 'a', big);
    p[big] = '\0';
    unary("/qnext.v1.Generator/Generate", prompt_req(p, 0, NULL), &qnext__v1__generate_response__descriptor, &m, &r);
    free(p);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    /* still serving afterwards */
    ck_assert_int_eq(health("", &r), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
}
END_TEST

START_TEST(test_cancel_frees_slot)
{
    stream s;
    stream_start(&s, "/qnext.v1.Generator/Generate", prompt_req("a long one", 100000, NULL), 20000);
    /* the fake's context is 4096 tokens and steps take 20 ms: far from done after 3 messages */
    for (int i = 0; i < 3; i++) {
        ProtobufCMessage *m = stream_read(&s, &qnext__v1__generate_response__descriptor);
        ck_assert_ptr_nonnull(m);
        gsvc_msg_free(m);
    }
    Qnext__V1__Load *l = get_load();
    ck_assert_int_eq(l->running, 1);
    ck_assert_int_eq(l->active_streams, 1);
    gsvc_msg_free(&l->base);
    grpc_call_cancel(s.call, NULL);
    reply r;
    stream_finish(&s, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_CANCELLED);
    int running = -1, active = -1;
    for (int i = 0; i < 200; i++) {
        l = get_load();
        running = l->running;
        active = l->active_streams;
        gsvc_msg_free(&l->base);
        if (running == 0 && active == 0) break;
        usleep(10000);
    }
    ck_assert_int_eq(running, 0);
    ck_assert_int_eq(active, 0);
}
END_TEST

START_TEST(test_queue_full_and_abort)
{
    /* max_running 1, max_queue 1: A runs, B waits, C is refused */
    stream a, b, c;
    stream_start(&a, "/qnext.v1.Generator/Generate", prompt_req("A", 100000, "req-a"), 20000);
    ProtobufCMessage *m = stream_read(&a, &qnext__v1__generate_response__descriptor);
    ck_assert_ptr_nonnull(m);
    gsvc_msg_free(m);
    stream_start(&b, "/qnext.v1.Generator/Generate", prompt_req("B", 3, NULL), 20000);
    for (int i = 0; i < 200; i++) { /* B reached the engine queue */
        Qnext__V1__Load *l = get_load();
        int w = l->waiting;
        gsvc_msg_free(&l->base);
        if (w == 1) break;
        usleep(5000);
    }
    Qnext__V1__Load *lw = get_load();
    ck_assert_int_eq(lw->waiting, 1);
    ck_assert_int_eq(lw->running, 1);
    gsvc_msg_free(&lw->base);
    stream_start(&c, "/qnext.v1.Generator/Generate", prompt_req("C", 3, NULL), 20000);
    ck_assert_ptr_null(stream_read(&c, &qnext__v1__generate_response__descriptor));
    reply r;
    stream_finish(&c, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_str_eq(r.retry_after, "321");

    /* a duplicate running request_id is refused */
    stream d;
    stream_start(&d, "/qnext.v1.Generator/Generate", prompt_req("D", 3, "req-a"), 20000);
    ck_assert_ptr_null(stream_read(&d, &qnext__v1__generate_response__descriptor));
    stream_finish(&d, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert(strstr(r.details, "already in use"));

    /* Abort A by its id: it ends with a CANCELLED Final and status OK; then B runs */
    Qnext__V1__AbortRequest ab = QNEXT__V1__ABORT_REQUEST__INIT;
    ab.request_id = "req-a";
    unary("/qnext.v1.Generator/Abort", pack_msg(&ab.base), &qnext__v1__abort_response__descriptor, &m, &r);
    ck_assert(((Qnext__V1__AbortResponse *)m)->found);
    gsvc_msg_free(m);
    int finish = -1;
    while ((m = stream_read(&a, &qnext__v1__generate_response__descriptor))) {
        const Qnext__V1__GenerateResponse *g = (const Qnext__V1__GenerateResponse *)m;
        if (g->kind_case == QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL) finish = g->final->finish_reason;
        gsvc_msg_free(m);
    }
    stream_finish(&a, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert_int_eq(finish, QNEXT__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    int n = 0;
    while ((m = stream_read(&b, &qnext__v1__generate_response__descriptor))) {
        n++;
        gsvc_msg_free(m);
    }
    stream_finish(&b, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert_int_ge(n, 2);
}
END_TEST

START_TEST(test_drain)
{
    stream a;
    stream_start(&a, "/qnext.v1.Generator/Generate", prompt_req("draining", 10, NULL), 20000);
    ProtobufCMessage *m = stream_read(&a, &qnext__v1__generate_response__descriptor);
    ck_assert_ptr_nonnull(m);
    gsvc_msg_free(m);
    gsvc_server_drain(srv);
    reply r;
    ck_assert_int_eq(health("", &r), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    ck_assert_int_eq(health("liveness", &r), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    stream b;
    stream_start(&b, "/qnext.v1.Generator/Generate", prompt_req("late", 3, NULL), 20000);
    ck_assert_ptr_null(stream_read(&b, &qnext__v1__generate_response__descriptor));
    stream_finish(&b, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNAVAILABLE);
    /* the running stream still completes */
    int finals = 0;
    while ((m = stream_read(&a, &qnext__v1__generate_response__descriptor))) {
        finals += ((Qnext__V1__GenerateResponse *)m)->kind_case == QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL;
        gsvc_msg_free(m);
    }
    stream_finish(&a, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert_int_eq(finals, 1);
    ck_assert(gsvc_server_wait_idle(srv, 5000));
}
END_TEST

START_TEST(test_shutdown_with_open_stream)
{
    /* shutdown while a stream runs: the call is cancelled, the engine request ends, nothing leaks */
    stream a;
    stream_start(&a, "/qnext.v1.Generator/Generate", prompt_req("endless", 100000, NULL), 20000);
    ProtobufCMessage *m = stream_read(&a, &qnext__v1__generate_response__descriptor);
    ck_assert_ptr_nonnull(m);
    gsvc_msg_free(m);
    gsvc_server_abort_streams(srv);
    gsvc_server_wait_idle(srv, 2000);
    gsvc_server_shutdown(srv);
    while ((m = stream_read(&a, &qnext__v1__generate_response__descriptor))) gsvc_msg_free(m);
    reply r;
    stream_finish(&a, &r);
    ck_assert(r.status == GRPC_STATUS_OK || r.status == GRPC_STATUS_UNAVAILABLE || r.status == GRPC_STATUS_CANCELLED);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("gsvc_server");
    TCase *tc = tcase_create("fast");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup_fast, teardown);
    tcase_add_test(tc, test_generate_stream);
    tcase_add_test(tc, test_unary_and_health);
    tcase_add_test(tc, test_bad_requests);
    suite_add_tcase(s, tc);
    tc = tcase_create("slow");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup_slow, teardown);
    tcase_add_test(tc, test_cancel_frees_slot);
    tcase_add_test(tc, test_queue_full_and_abort);
    tcase_add_test(tc, test_drain);
    tcase_add_test(tc, test_shutdown_with_open_stream);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(server_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
