/* core/util.c - logging, files, time, progress bar (see core.h). */
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ==== logging ================================================================================= */

static int log_level = -1;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static int log_threshold(void)
{
    if (log_level < 0) {
        const char *e = getenv("QNEXT_LOG");
        int l = ENG_LOG_INFO;
        if (e) {
            if (!strcmp(e, "debug")) l = ENG_LOG_DEBUG;
            else if (!strcmp(e, "warn")) l = ENG_LOG_WARN;
            else if (!strcmp(e, "error")) l = ENG_LOG_ERROR;
        }
        log_level = l;
    }
    return log_level;
}

void eng_log_set_level(eng_log_level lvl)
{
    log_level = (int)lvl;
}

void eng_log(eng_log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    if ((int)lvl < log_threshold()) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "qnext: %s: %s\n", names[lvl], line);
    pthread_mutex_unlock(&log_mu);
}

/* ==== files =================================================================================== */

eng_status eng_file_read(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return eng_err_set(ENG_ERR_IO, "%s: %s", path, strerror(errno));
    eng_status st = ENG_OK;
    char *data = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = eng_err_set(ENG_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = eng_err_set(ENG_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        st = eng_err_set(ENG_ERR_INVALID, "%s: file is %lld bytes, more than the limit of %zu", path,
                         (long long)sb.st_size, max_bytes);
        goto out;
    }
    size_t n = (size_t)sb.st_size;
    data = eng_malloc(n + 1);
    if (!data) {
        st = eng_err_set(ENG_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
        goto out;
    }
    if (n && fread(data, 1, n, f) != n) {
        st = eng_err_set(ENG_ERR_IO, "%s: short read", path);
        goto out;
    }
    data[n] = '\0';
    *out = data;
    data = NULL;
    if (len) *len = n;
out:
    eng_free(data);
    fclose(f);
    return st;
}

bool eng_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

bool eng_dir_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

char *eng_path_join(const char *dir, const char *name)
{
    eng_buf b;
    eng_buf_init(&b);
    eng_buf_puts(&b, dir);
    if (b.len && b.data[b.len - 1] != '/') eng_buf_putc(&b, '/');
    eng_buf_puts(&b, name);
    return eng_buf_take(&b, NULL);
}

/* ==== time ==================================================================================== */

uint64_t eng_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double eng_now_s(void)
{
    return (double)eng_now_ns() * 1e-9;
}

size_t eng_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;
}

/* ==== progress bar ============================================================================ */

const char *eng_fmt_bytes(double bytes, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (bytes >= 1000.0 && u < 4) {
        bytes /= 1000.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

static void progress_draw(eng_progress *p, bool final)
{
    uint64_t now = eng_now_ns();
    double el = (double)(now - p->t_start_ns) * 1e-9;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1.0) frac = 1.0;
    char bar[31];
    int w = 30, fill = (int)(frac * w);
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[w] = '\0';
    char a[32], b[32], r[32];
    double rate = el > 0 ? (double)p->done / el : 0;
    if (p->bytes)
        fprintf(stderr, "\r%s [%s] %3.0f%% %s/%s %s/s   ", p->label, bar, frac * 100, eng_fmt_bytes((double)p->done, a, sizeof a),
                eng_fmt_bytes((double)p->total, b, sizeof b), eng_fmt_bytes(rate, r, sizeof r));
    else
        fprintf(stderr, "\r%s [%s] %3.0f%% %llu/%llu %.1f/s   ", p->label, bar, frac * 100, (unsigned long long)p->done,
                (unsigned long long)p->total, rate);
    if (final) fputc('\n', stderr);
    fflush(stderr);
    p->t_last_ns = now;
}

void eng_progress_begin(eng_progress *p, const char *label, uint64_t total, bool bytes)
{
    const char *force = getenv("QNEXT_PROGRESS");
    p->label = label;
    p->total = total;
    p->done = 0;
    p->bytes = bytes;
    p->enabled = force ? strcmp(force, "0") != 0 : isatty(STDERR_FILENO);
    p->t_start_ns = p->t_last_ns = eng_now_ns();
}

void eng_progress_update(eng_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled) return;
    if (eng_now_ns() - p->t_last_ns < 100000000ull) return;
    progress_draw(p, false);
}

void eng_progress_end(eng_progress *p)
{
    if (p->enabled) progress_draw(p, true);
    p->enabled = false;
}
