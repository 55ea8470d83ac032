/*
 * ctools._speedups._ctfast -- optional accelerator for the `conntrack -L` hot path.
 *
 * It walks whole netlink receive buffers of a ctnetlink dump and writes every entry in
 * the default one-line text format (optionally with the extended/id columns), exactly as
 * ctools.format.text.format_entry(ctools.netlink.codec.decode_entry(payload), flags)
 * would.  Anything it is not sure to reproduce byte for byte (labels with a label map,
 * kernel timestamps, security contexts, non-ASCII helper names, malformed attributes)
 * is handed to a Python fallback callable, so the pure-Python path stays the reference.
 *
 * Our own code (ctools), written from the Linux uapi headers' attribute layout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>

/* output option bits shared with ctools.format.text */
#define O_EXT 2
#define O_ID 8
#define O_KTMS 16
#define O_LABELS 32
#define O_EVENT (1 << 16)   /* private: an event line (no use= field) */

#define NLA_TYPE_MASK 0x3fff

typedef struct {
    int present;
    int family;
    int has_src, has_dst;
    int src_v6, dst_v6;
    unsigned char src[16], dst[16];
    int has_proto; unsigned proto;
    int has_sport, has_dport; unsigned sport, dport;
    int has_itype, has_icode, has_iid; unsigned itype, icode, iid;
    int has_zone; unsigned zone;
} ctuple;

typedef struct {
    ctuple orig, reply;
    int has_status; uint32_t status;
    int has_timeout; uint32_t timeout;
    int has_mark; uint32_t mark;
    int has_secmark; uint32_t secmark;
    int has_zone; unsigned zone;
    int has_use; uint32_t use;
    int has_id; uint32_t id;
    int has_op, has_ob, has_rp, has_rb;
    uint64_t op, ob, rp, rb;
    int has_tcp_state; unsigned tcp_state;
    int has_sctp_state; unsigned sctp_state;
    int has_dccp_state; unsigned dccp_state;
    const unsigned char *helper; Py_ssize_t helper_len; int has_helper;
    int has_secctx;
    int has_ts_start, has_ts_stop; uint64_t ts_start, ts_stop;
    int has_labels;
} centry;

static inline unsigned get16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t get64(const unsigned char *p)
{
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}
static inline unsigned attr_len(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline unsigned attr_type(const unsigned char *p)
{
    uint16_t v; memcpy(&v, p + 2, 2); return v & NLA_TYPE_MASK;
}

/* Walk one nesting level checking every length; 0 = well formed. */
static int check_nest(const unsigned char *b, Py_ssize_t off, Py_ssize_t end)
{
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off);
        if (ln < 4 || off + ln > end)
            return -1;
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    return 0;
}

/* Parse a tuple nest the way codec._decode_tuple does; -1 = malformed. */
static int parse_tuple(const unsigned char *b, Py_ssize_t off, Py_ssize_t end, int family,
                       ctuple *t)
{
    memset(t, 0, sizeof(*t));
    t->present = 1;
    t->family = family;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        Py_ssize_t nxt = off + ln;
        if (ln < 4 || nxt > end)
            return -1;
        if (ty == 1) {                      /* CTA_TUPLE_IP */
            Py_ssize_t p = off + 4;
            while (p + 4 <= nxt) {
                unsigned l2 = attr_len(b + p), t2 = attr_type(b + p);
                Py_ssize_t n2 = p + l2;
                if (l2 < 4 || n2 > nxt)
                    return -1;
                if (t2 <= 4) {
                    int v6 = t2 > 2;
                    if (l2 != (v6 ? 20u : 8u))
                        return -1;
                    t->family = v6 ? AF_INET6 : AF_INET;
                    if (t2 & 1) {
                        t->has_src = 1; t->src_v6 = v6; memcpy(t->src, b + p + 4, v6 ? 16 : 4);
                    } else {
                        t->has_dst = 1; t->dst_v6 = v6; memcpy(t->dst, b + p + 4, v6 ? 16 : 4);
                    }
                }
                p = (n2 + 3) & ~(Py_ssize_t)3;
            }
        } else if (ty == 2) {               /* CTA_TUPLE_PROTO */
            Py_ssize_t p = off + 4;
            while (p + 4 <= nxt) {
                unsigned l2 = attr_len(b + p), t2 = attr_type(b + p);
                Py_ssize_t n2 = p + l2;
                const unsigned char *v = b + p + 4;
                if (l2 < 4 || n2 > nxt)
                    return -1;
                switch (t2) {
                case 1: if (l2 < 5) return -1; t->has_proto = 1; t->proto = v[0]; break;
                case 2: if (l2 < 6) return -1; t->has_sport = 1; t->sport = get16(v); break;
                case 3: if (l2 < 6) return -1; t->has_dport = 1; t->dport = get16(v); break;
                case 4: case 7: if (l2 < 6) return -1; t->has_iid = 1; t->iid = get16(v); break;
                case 5: case 8: if (l2 < 5) return -1; t->has_itype = 1; t->itype = v[0]; break;
                case 6: case 9: if (l2 < 5) return -1; t->has_icode = 1; t->icode = v[0]; break;
                default: break;
                }
                p = (n2 + 3) & ~(Py_ssize_t)3;
            }
        } else if (ty == 3) {               /* CTA_TUPLE_ZONE */
            if (ln < 6)
                return -1;
            t->has_zone = 1;
            t->zone = get16(b + off + 4);
        }
        off = (nxt + 3) & ~(Py_ssize_t)3;
    }
    return 0;
}

/* Sizes each member of a "cold" nest must have; 0 = no check. Mirrors codec._need(). */
static int check_members(const unsigned char *b, Py_ssize_t off, Py_ssize_t end,
                         const unsigned *need, unsigned nneed)
{
    if (check_nest(b, off, end))
        return -1;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        if (ty < nneed && need[ty] && ln - 4 < need[ty])
            return -1;
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    return 0;
}

static int parse_counters(const unsigned char *b, Py_ssize_t off, Py_ssize_t end,
                          int *hp, uint64_t *p, int *hb, uint64_t *by)
{
    /* The Python decoder reads the nest as a map (a repeated type: its last value, at the
     * place of its first occurrence) and assigns both counters: the 64-bit and the 32-bit
     * form of a counter then win in the order they first appear. */
    Py_ssize_t first[5] = {-1, -1, -1, -1, -1}, last[5] = {-1, -1, -1, -1, -1};
    int i;
    *hp = *hb = 0;
    if (check_nest(b, off, end))
        return -1;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        if (ty >= 1 && ty <= 4) {
            if (ln - 4 < (ty <= 2 ? 8u : 4u))
                return -1;
            if (first[ty] < 0)
                first[ty] = off;
            last[ty] = off;
        }
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    for (i = 0; i < 2; i++) {           /* i = 0: packets (types 1, 3); 1: bytes (2, 4) */
        int wide = 1 + i, narrow = 3 + i, ty;
        if (last[wide] < 0 && last[narrow] < 0)
            continue;
        if (last[narrow] < 0)
            ty = wide;
        else if (last[wide] < 0)
            ty = narrow;
        else
            ty = first[wide] > first[narrow] ? wide : narrow;
        if (i == 0) {
            *hp = 1;
            *p = ty <= 2 ? get64(b + last[ty] + 4) : get32(b + last[ty] + 4);
        } else {
            *hb = 1;
            *by = ty <= 2 ? get64(b + last[ty] + 4) : get32(b + last[ty] + 4);
        }
    }
    return 0;
}

/* Is the attribute at `off` the last one of its type in its (checked) nest? The Python
 * decoder reads a nest level as a map: a repeated type counts only in its last occurrence. */
static int last_of_type(const unsigned char *b, Py_ssize_t off, Py_ssize_t end)
{
    unsigned ty = attr_type(b + off);
    for (off = (off + attr_len(b + off) + 3) & ~(Py_ssize_t)3; off + 4 <= end;
         off = (off + attr_len(b + off) + 3) & ~(Py_ssize_t)3)
        if (attr_type(b + off) == ty)
            return 0;
    return 1;
}

static int parse_protoinfo(const unsigned char *b, Py_ssize_t off, Py_ssize_t end, centry *e)
{
    static const unsigned tcp_need[6] = {0, 1, 1, 1, 2, 2};
    static const unsigned sctp_need[4] = {0, 1, 4, 4};
    static const unsigned dccp_need[4] = {0, 1, 1, 8};
    Py_ssize_t at;
    if (check_nest(b, off, end))
        return -1;
    for (at = off; at + 4 <= end; at = (at + attr_len(b + at) + 3) & ~(Py_ssize_t)3) {
        unsigned ty = attr_type(b + at);
        Py_ssize_t s = at + 4, n = at + attr_len(b + at), p;
        if (!last_of_type(b, at, end))
            continue;
        if (check_nest(b, s, n))
            return -1;
        if (ty == 1 && check_members(b, s, n, tcp_need, 6)) return -1;
        if (ty == 3 && check_members(b, s, n, sctp_need, 4)) return -1;
        if (ty == 2 && check_members(b, s, n, dccp_need, 4)) return -1;
        for (p = s; p + 4 <= n; p = (p + attr_len(b + p) + 3) & ~(Py_ssize_t)3) {
            if (attr_type(b + p) != 1)
                continue;
            if (ty == 1) { e->has_tcp_state = 1; e->tcp_state = b[p + 4]; }
            else if (ty == 3) { e->has_sctp_state = 1; e->sctp_state = b[p + 4]; }
            else if (ty == 2) { e->has_dccp_state = 1; e->dccp_state = b[p + 4]; }
        }
    }
    return 0;
}

static int parse_nat(const unsigned char *b, Py_ssize_t off, Py_ssize_t end)
{
    static const unsigned need[6] = {0, 4, 4, 0, 16, 16};
    static const unsigned port_need[3] = {0, 2, 2};
    if (check_members(b, off, end, need, 6))
        return -1;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        if (ty == 3 && check_members(b, off + 4, off + ln, port_need, 3))
            return -1;
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    return 0;
}

/* Find attribute `want` in a nest; returns its value offset or -1. */
static Py_ssize_t find_attr(const unsigned char *b, Py_ssize_t off, Py_ssize_t end,
                            unsigned want, Py_ssize_t *stop)
{
    Py_ssize_t found = -1;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off);
        if (attr_type(b + off) == want) { found = off + 4; *stop = off + ln; }
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    return found;  /* last one wins, as with the Python dict */
}

/* 0 = parsed, -1 = malformed or not for us (caller falls back). */
static int parse_entry(const unsigned char *b, Py_ssize_t end, centry *e)
{
    static const unsigned triplet_need[4] = {0, 4, 4, 4};
    static const unsigned ts_need[3] = {0, 8, 8};
    Py_ssize_t off = 4;
    int family;
    memset(e, 0, sizeof(*e));
    if (end < 4)
        return -1;
    family = b[0];
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        Py_ssize_t s = off + 4, nxt = off + ln;
        const unsigned char *v = b + s;
        if (ln < 4 || nxt > end)
            return -1;
        switch (ty) {
        case 1: if (parse_tuple(b, s, nxt, family, &e->orig)) return -1; break;
        case 2: if (parse_tuple(b, s, nxt, family, &e->reply)) return -1; break;
        case 14: { ctuple m; if (parse_tuple(b, s, nxt, family, &m)) return -1; break; }
        case 3: if (ln != 8) return -1; e->has_status = 1; e->status = get32(v); break;
        case 7: if (ln != 8) return -1; e->has_timeout = 1; e->timeout = get32(v); break;
        case 8: if (ln != 8) return -1; e->has_mark = 1; e->mark = get32(v); break;
        case 11: if (ln != 8) return -1; e->has_use = 1; e->use = get32(v); break;
        case 12: if (ln != 8) return -1; e->has_id = 1; e->id = get32(v); break;
        case 17: if (ln != 8) return -1; e->has_secmark = 1; e->secmark = get32(v); break;
        case 21: case 26: if (ln != 8) return -1; break;
        case 27: if (ln != 12) return -1; break;
        case 18: if (ln != 6 && ln != 8) return -1; e->has_zone = 1; e->zone = get16(v); break;
        case 4: if (parse_protoinfo(b, s, nxt, e)) return -1; break;
        case 9: if (parse_counters(b, s, nxt, &e->has_op, &e->op, &e->has_ob, &e->ob)) return -1; break;
        case 10: if (parse_counters(b, s, nxt, &e->has_rp, &e->rp, &e->has_rb, &e->rb)) return -1; break;
        case 5: {
            Py_ssize_t stop = 0, h;
            if (check_nest(b, s, nxt)) return -1;
            h = find_attr(b, s, nxt, 1, &stop);
            if (h >= 0) {
                Py_ssize_t i;
                e->has_helper = 1; e->helper = b + h; e->helper_len = 0;
                for (i = h; i < stop && b[i]; i++) {
                    if (b[i] < 0x20 || b[i] > 0x7e)
                        return -1;  /* leave non-ASCII names to Python */
                    e->helper_len++;
                }
            }
            break;
        }
        case 6: case 13: if (parse_nat(b, s, nxt)) return -1; break;
        case 15: case 16: case 24:
            if (check_members(b, s, nxt, triplet_need, 4)) return -1;
            break;
        case 19:
            if (check_nest(b, s, nxt)) return -1;
            { Py_ssize_t stop; if (find_attr(b, s, nxt, 1, &stop) >= 0) e->has_secctx = 1; }
            break;
        case 20: {
            Py_ssize_t p;
            if (check_members(b, s, nxt, ts_need, 3)) return -1;
            for (p = s; p + 4 <= nxt; p = (p + attr_len(b + p) + 3) & ~(Py_ssize_t)3) {
                unsigned t2 = attr_type(b + p);
                if (t2 == 1) { e->has_ts_start = 1; e->ts_start = get64(b + p + 4); }
                else if (t2 == 2) { e->has_ts_stop = 1; e->ts_stop = get64(b + p + 4); }
            }
            break;
        }
        case 22: case 23:
            if ((ln - 4) % 4) return -1;
            if (ty == 22) e->has_labels = 1;
            break;
        default: break;
        }
        off = (nxt + 3) & ~(Py_ssize_t)3;
    }
    return 0;
}

/* ---- output buffer ------------------------------------------------------------------- */
typedef struct { char *p; Py_ssize_t len, cap; } obuf;

static int ob_reserve(obuf *o, Py_ssize_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 65536;
    while (cap < o->len + more)
        cap *= 2;
    char *np = PyMem_Realloc(o->p, cap);
    if (!np) { PyErr_NoMemory(); return -1; }
    o->p = np; o->cap = cap;
    return 0;
}

static const char *const TCP_STATES[] = {"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED",
    "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"};
static const char *const SCTP_STATES[] = {"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED",
    "ESTABLISHED", "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT",
    "HEARTBEAT_ACKED"};
static const char *const DCCP_STATES[] = {"NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN",
    "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE", "INVALID"};

static const char *l4_name(unsigned p)
{
    switch (p) {
    case 6: return "tcp"; case 17: return "udp"; case 136: return "udplite";
    case 1: return "icmp"; case 58: return "icmpv6"; case 132: return "sctp";
    case 33: return "dccp"; case 47: return "gre";
    default: return "unknown";
    }
}

static char *put_addr(char *w, int v6, const unsigned char *a)
{
    if (!v6) {
        /* the common case, without inet_ntop's overhead */
        int i;
        for (i = 0; i < 4; i++) {
            unsigned x = a[i];
            if (x >= 100) { *w++ = '0' + x / 100; x %= 100; *w++ = '0' + x / 10; *w++ = '0' + x % 10; }
            else if (x >= 10) { *w++ = '0' + x / 10; *w++ = '0' + x % 10; }
            else *w++ = '0' + x;
            if (i < 3) *w++ = '.';
        }
        return w;
    }
    inet_ntop(AF_INET6, a, w, 46);
    return w + strlen(w);
}

static char *put_u64(char *w, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do { tmp[n++] = '0' + (char)(v % 10); v /= 10; } while (v);
    while (n) *w++ = tmp[--n];
    return w;
}

static char *put_str(char *w, const char *s) { size_t n = strlen(s); memcpy(w, s, n); return w + n; }

static char *put_kv(char *w, const char *key, uint64_t v)
{
    w = put_str(w, key);
    w = put_u64(w, v);
    *w++ = ' ';
    return w;
}

static char *put_hex(char *w, unsigned v)
{
    char tmp[12];
    int n = 0;
    *w++ = '0'; *w++ = 'x';
    do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    while (n) *w++ = tmp[--n];
    return w;
}

/* codec + format_entry's l4_fields() */
static char *put_l4(char *w, const ctuple *t, int has_proto, unsigned proto)
{
    if (!has_proto)
        return w;
    switch (proto) {
    case 6: case 17: case 136: case 132: case 33:
        if (!t->has_sport && proto != 33)
            return w;
        w = put_kv(w, "sport=", t->has_sport ? t->sport : 0);
        return put_kv(w, "dport=", t->has_dport ? t->dport : 0);
    case 1: case 58:
        if (!t->has_itype && !t->has_icode && !t->has_iid)
            return w;
        w = put_kv(w, "type=", t->has_itype ? t->itype : 0);
        w = put_kv(w, "code=", t->has_icode ? t->icode : 0);
        return put_kv(w, "id=", t->has_iid ? t->iid : 0);
    case 47:
        if (!t->has_sport && !t->has_dport)
            return w;
        w = put_str(w, "srckey="); w = put_hex(w, t->has_sport ? t->sport : 0); *w++ = ' ';
        w = put_str(w, "dstkey="); w = put_hex(w, t->has_dport ? t->dport : 0); *w++ = ' ';
        return w;
    default:
        return w;
    }
}

static int floor_div_ns(int64_t num, int64_t *out)
{
    int64_t q = num / 1000000000LL;
    if ((num % 1000000000LL) && num < 0)
        q -= 1;
    *out = q;
    return 0;
}

/* Format one entry; 0 = written, 1 = fall back to Python. */
static int format_entry(obuf *o, const centry *e, int flags, long long now)
{
    const ctuple *or_ = &e->orig, *re = &e->reply;
    char *w;
    int has_proto = or_->has_proto;
    unsigned proto = or_->proto;
    if (e->has_secctx)
        return 1;
    if (e->has_labels && (flags & O_LABELS))
        return 1;
    if ((e->has_ts_start || e->has_ts_stop) && (flags & O_KTMS))
        return 1;
    if (e->has_ts_start && (now < 0 || e->ts_start >> 62 || e->ts_stop >> 62))
        return 1;
    if ((or_->has_src && !or_->has_dst) || (re->has_src && !re->has_dst))
        return 1;  /* Python would print "dst=None" */
    if (ob_reserve(o, 1024 + e->helper_len) < 0)
        return -1;
    w = o->p + o->len;
    if (flags & O_EXT) {
        int fam = or_->present ? or_->family : 0;
        if (fam == 2) w = put_str(w, "ipv4     2 ");
        else if (fam == 10) w = put_str(w, "ipv6     10 ");
        else { w = put_str(w, "unknown  "); w = put_u64(w, (unsigned)fam); *w++ = ' '; }
    }
    if (has_proto) {
        const char *n = l4_name(proto & 0xff);
        size_t len = strlen(n);
        memcpy(w, n, len); w += len;
        while (len < 8) { *w++ = ' '; len++; }
        *w++ = ' ';
        w = put_u64(w, proto);
        *w++ = ' ';
    }
    if (e->has_timeout)
        w = put_kv(w, "", e->timeout);
    if (e->has_tcp_state) {
        w = put_str(w, e->tcp_state < 10 ? TCP_STATES[e->tcp_state] : "NONE"); *w++ = ' ';
    } else if (e->has_sctp_state) {
        w = put_str(w, e->sctp_state < 10 ? SCTP_STATES[e->sctp_state] : "NONE"); *w++ = ' ';
    } else if (e->has_dccp_state) {
        w = put_str(w, e->dccp_state < 10 ? DCCP_STATES[e->dccp_state] : "NONE"); *w++ = ' ';
    }
    if (or_->has_src) {
        w = put_str(w, "src="); w = put_addr(w, or_->src_v6, or_->src);
        w = put_str(w, " dst="); w = put_addr(w, or_->dst_v6, or_->dst); *w++ = ' ';
    }
    w = put_l4(w, or_, has_proto, proto);
    if (or_->has_zone)
        w = put_kv(w, "zone-orig=", or_->zone);
    if (e->has_op && e->has_ob) {
        w = put_kv(w, "packets=", e->op); w = put_kv(w, "bytes=", e->ob);
    }
    if (e->has_status && !(e->status & 2))
        w = put_str(w, "[UNREPLIED] ");
    if (re->has_src) {
        w = put_str(w, "src="); w = put_addr(w, re->src_v6, re->src);
        w = put_str(w, " dst="); w = put_addr(w, re->dst_v6, re->dst); *w++ = ' ';
    }
    if (re->has_proto)
        w = put_l4(w, re, 1, re->proto);
    else
        w = put_l4(w, re, has_proto, proto);
    if (re->has_zone)
        w = put_kv(w, "zone-reply=", re->zone);
    if (e->has_rp && e->has_rb) {
        w = put_kv(w, "packets=", e->rp); w = put_kv(w, "bytes=", e->rb);
    }
    if (e->has_status) {
        if (e->status & (1u << 15)) w = put_str(w, "[HW_OFFLOAD] ");
        else if (e->status & (1u << 14)) w = put_str(w, "[OFFLOAD] ");
        else if (e->status & 4) w = put_str(w, "[ASSURED] ");
    }
    if (e->has_mark)
        w = put_kv(w, "mark=", e->mark);
    if (e->has_secmark)
        w = put_kv(w, "secmark=", e->secmark);
    if (e->has_zone)
        w = put_kv(w, "zone=", e->zone);
    if (e->has_ts_start) {
        int64_t d;
        if (e->has_ts_stop && e->ts_stop)
            floor_div_ns((int64_t)e->ts_stop - (int64_t)e->ts_start, &d);
        else
            d = (int64_t)now - (int64_t)(e->ts_start / 1000000000ULL);
        w = put_str(w, "delta-time=");
        if (d < 0) { *w++ = '-'; w = put_u64(w, (uint64_t)(-d)); }
        else w = put_u64(w, (uint64_t)d);
        *w++ = ' ';
    }
    if (e->has_helper) {
        w = put_str(w, "helper=");
        memcpy(w, e->helper, e->helper_len); w += e->helper_len;
        *w++ = ' ';
    }
    if (e->has_use && !(flags & O_EVENT))
        w = put_kv(w, "use=", e->use);
    if ((flags & O_ID) && e->has_id)
        w = put_kv(w, "id=", e->id);
    if (w > o->p + o->len && w[-1] == ' ')
        w[-1] = '\n';
    else
        *w++ = '\n';
    o->len = w - o->p;
    return 0;
}

/* ---- Python API ---------------------------------------------------------------------- */

static int call_fallback(PyObject *fallback, PyObject *owner, Py_ssize_t off, Py_ssize_t len,
                         obuf *o, Py_ssize_t *count)
{
    PyObject *view, *slice, *res;
    view = PyMemoryView_FromObject(owner);
    if (!view)
        return -1;
    slice = PySequence_GetSlice(view, off, off + len);
    Py_DECREF(view);
    if (!slice)
        return -1;
    res = PyObject_CallOneArg(fallback, slice);
    Py_DECREF(slice);
    if (!res)
        return -1;
    if (res != Py_None) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(res, &n);
        if (!s) { Py_DECREF(res); return -1; }
        if (ob_reserve(o, n) < 0) { Py_DECREF(res); return -1; }
        memcpy(o->p + o->len, s, n);
        o->len += n;
        (*count)++;
    }
    Py_DECREF(res);
    return 0;
}

/* A userspace filter format_dump can apply itself (see ctools.netlink.fast.DumpMatch):
 * original-direction address/mask checks and the layer-4 protocol of both tuples. */
typedef struct {
    int active;
    int family;                 /* 0 = no address check */
    int has_src, has_dst;
    unsigned char src[16], smask[16], dst[16], dmask[16];
    int proto;                  /* -1 = any */
} dmatch;

static int match_addr(const unsigned char *a, const unsigned char *want,
                      const unsigned char *mask, int n)
{
    for (int i = 0; i < n; i++)
        if ((a[i] & mask[i]) != want[i])
            return 0;
    return 1;
}

static int dump_match(const dmatch *m, const centry *e)
{
    if (m->family) {
        int v6 = m->family == AF_INET6, n = v6 ? 16 : 4;
        if (!e->orig.present || e->orig.family != m->family)
            return 0;
        if (m->has_src && (!e->orig.has_src || e->orig.src_v6 != v6
                           || !match_addr(e->orig.src, m->src, m->smask, n)))
            return 0;
        if (m->has_dst && (!e->orig.has_dst || e->orig.dst_v6 != v6
                           || !match_addr(e->orig.dst, m->dst, m->dmask, n)))
            return 0;
    }
    if (m->proto >= 0) {
        if (!e->orig.present || !e->orig.has_proto || e->orig.proto != (unsigned)m->proto)
            return 0;
        if (!e->reply.present || !e->reply.has_proto || e->reply.proto != (unsigned)m->proto)
            return 0;
    }
    return 1;
}

/* (family, proto, src, smask, dst, dmask): addresses as 4/16 bytes, b"" = not checked */
static int parse_match(PyObject *obj, dmatch *m)
{
    Py_buffer bs[4];
    int family, proto, n;
    memset(m, 0, sizeof(*m));
    m->proto = -1;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (!PyArg_ParseTuple(obj, "iiy*y*y*y*", &family, &proto, &bs[0], &bs[1], &bs[2], &bs[3]))
        return -1;
    n = family == AF_INET6 ? 16 : 4;
    int ok = (family == 0 || family == AF_INET || family == AF_INET6) && proto >= -1
             && proto <= 255;
    for (int i = 0; i < 4; i += 2) {
        if (bs[i].len == 0 && bs[i + 1].len == 0)
            continue;
        if (family == 0 || bs[i].len != n || bs[i + 1].len != n) {
            ok = 0;
            continue;
        }
        memcpy(i ? m->dst : m->src, bs[i].buf, n);
        memcpy(i ? m->dmask : m->smask, bs[i + 1].buf, n);
        if (i) m->has_dst = 1; else m->has_src = 1;
    }
    for (int i = 0; i < 4; i++)
        PyBuffer_Release(&bs[i]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "bad dump match");
        return -1;
    }
    m->active = 1;
    m->family = family;
    m->proto = proto;
    return 0;
}

PyDoc_STRVAR(format_dump_doc,
"format_dump(buf, seq, flags, now, fallback[, match]) -> (text, count, done, errno)\n\n"
"Format every conntrack message of one netlink receive buffer whose sequence number\n"
"is seq (0 = any) in the one-line text format selected by the O_* bits in flags.\n"
"Payloads it does not handle are passed to fallback(payload) -> str | None (None =\n"
"skip).  done is true once NLMSG_DONE or an error was seen; errno is the error\n"
"(0 = none).  now is time.time() as an int (for delta-time), or -1.\n"
"match, when given, is (family, proto, src, smask, dst, dmask): entries it parses\n"
"and that fail it are skipped (fallback payloads must be filtered by fallback).\n"
"Raises ValueError on a malformed netlink header.");

static PyObject *format_dump(PyObject *self, PyObject *args)
{
    PyObject *bufobj, *fallback, *matchobj = NULL, *ret = NULL;
    unsigned long seq;
    int flags;
    long long now;
    Py_buffer view;
    obuf o = {0};
    Py_ssize_t off = 0, count = 0;
    int done = 0, err = 0;
    dmatch match;
    (void)self;
    if (!PyArg_ParseTuple(args, "OkiLO|O", &bufobj, &seq, &flags, &now, &fallback, &matchobj))
        return NULL;
    if (parse_match(matchobj, &match) < 0)
        return NULL;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    {
        const unsigned char *b = view.buf;
        Py_ssize_t end = view.len;
        if (ob_reserve(&o, 65536) < 0)
            goto out;
        while (off < end && !done) {
            uint32_t mlen, mseq;
            uint16_t mtype;
            centry e;
            if (end - off < 16) {
                PyErr_Format(PyExc_ValueError, "truncated netlink header at offset %zd", off);
                goto out;
            }
            memcpy(&mlen, b + off, 4);
            memcpy(&mtype, b + off + 4, 2);
            memcpy(&mseq, b + off + 8, 4);
            if (mlen < 16 || off + (Py_ssize_t)mlen > end) {
                PyErr_Format(PyExc_ValueError, "bad netlink message length %u at offset %zd",
                             mlen, off);
                goto out;
            }
            if (seq == 0 || mseq == (uint32_t)seq) {
                const unsigned char *pl = b + off + 16;
                Py_ssize_t plen = mlen - 16;
                if (mtype == 3) {                 /* NLMSG_DONE */
                    done = 1;
                    if (plen >= 4) {
                        int32_t v; memcpy(&v, pl, 4);
                        if (v < 0) err = -v;
                    }
                } else if (mtype == 2) {          /* NLMSG_ERROR */
                    if (plen >= 4) {
                        int32_t v; memcpy(&v, pl, 4);
                        if (v < 0) { err = -v; done = 1; }
                    }
                } else if (mtype >= 16) {
                    int r = parse_entry(pl, plen, &e) ? 1 : 2;
                    if (r == 2 && match.active && !dump_match(&match, &e))
                        r = 3;                       /* filtered out */
                    else if (r == 2)
                        r = format_entry(&o, &e, flags, now);
                    if (r < 0)
                        goto out;
                    if (r == 0)
                        count++;
                    else if (r == 1
                             && call_fallback(fallback, bufobj, off + 16, plen, &o, &count) < 0)
                        goto out;
                }
            }
            off += (mlen + 3) & ~3u;
        }
        ret = Py_BuildValue("(Nnii)", PyUnicode_DecodeUTF8(o.p, o.len, "strict"), count, done,
                            err);
    }
out:
    PyMem_Free(o.p);
    PyBuffer_Release(&view);
    return ret;
}

PyDoc_STRVAR(format_payload_doc,
"format_payload(payload, flags, now) -> str | None\n\n"
"One conntrack payload (from nfgenmsg on) as a text line, or None when the Python\n"
"formatter must handle it.");

static PyObject *format_payload(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int flags;
    long long now;
    centry e;
    obuf o = {0};
    PyObject *ret = NULL;
    int r;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iL", &view, &flags, &now))
        return NULL;
    r = parse_entry(view.buf, view.len, &e) ? 1 : format_entry(&o, &e, flags, now);
    if (r == 0)
        ret = PyUnicode_DecodeUTF8(o.p, o.len, "strict");
    else if (r == 1)
        ret = Py_NewRef(Py_None);
    PyMem_Free(o.p);
    PyBuffer_Release(&view);
    return ret;
}

static unsigned char *event_buf;

PyDoc_STRVAR(format_events_doc,
"format_events(fd, flags, now, fallback, max_bytes) -> (text, count, errno)\n\n"
"Read every ctnetlink event already queued on the netlink socket fd (non-blocking)\n"
"and format each as a `conntrack -E` line (\"    [NEW] ...\").  Events caused by a\n"
"userspace process (portid != 0) and entries the C formatter does not handle are\n"
"passed to fallback(kind, portid, payload) -> str | None.  Stops when the socket is\n"
"empty, on an error (errno, e.g. ENOBUFS, with the text so far) or once max_bytes of\n"
"text are ready.");

static PyObject *format_events(PyObject *self, PyObject *args)
{
    static const char *const prefix[3] = {"    [NEW] ", " [UPDATE] ", "[DESTROY] "};
    static const char *const kinds[3] = {"NEW", "UPDATE", "DESTROY"};
    PyObject *fallback, *ret = NULL, *owner = NULL;
    int fd, flags, err = 0;
    long long now;
    Py_ssize_t max_bytes, count = 0;
    obuf o = {0};
    unsigned char *buf = NULL;
    const Py_ssize_t bufsize = 1 << 17;
    (void)self;
    if (!PyArg_ParseTuple(args, "iiLOn", &fd, &flags, &now, &fallback, &max_bytes))
        return NULL;
    /* one receive buffer for the life of the process: a fresh 128 KiB malloc per call
       would be an mmap/munmap pair (the GIL serialises callers) */
    if (!event_buf)
        event_buf = PyMem_RawMalloc(bufsize);
    buf = event_buf;
    if (!buf || ob_reserve(&o, 65536) < 0) {
        PyErr_NoMemory();
        goto out;
    }
    while (o.len < max_bytes) {
        ssize_t n = recv(fd, buf, bufsize, MSG_DONTWAIT);
        Py_ssize_t off = 0;
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto out;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                err = errno;
            break;
        }
        while (off + 16 <= n) {
            uint32_t mlen, pid;
            uint16_t mtype, mflags;
            memcpy(&mlen, buf + off, 4);
            memcpy(&mtype, buf + off + 4, 2);
            memcpy(&mflags, buf + off + 6, 2);
            memcpy(&pid, buf + off + 12, 4);
            if (mlen < 16 || off + (Py_ssize_t)mlen > n) {
                PyErr_Format(PyExc_ValueError, "bad netlink message length %u", mlen);
                goto out;
            }
            if (mtype >= 16) {
                int k = (mtype & 0xff) == 2 ? 2 : ((mflags & (0x400 | 0x200)) ? 0 : 1);
                const unsigned char *pl = buf + off + 16;
                Py_ssize_t plen = mlen - 16, start = o.len;
                centry e;
                int r = 1;
                if (pid == 0 && !parse_entry(pl, plen, &e)) {
                    size_t pn = strlen(prefix[k]);
                    if (ob_reserve(&o, pn) < 0)
                        goto out;
                    memcpy(o.p + o.len, prefix[k], pn);
                    o.len += pn;
                    r = format_entry(&o, &e, flags | O_EVENT, now);
                    if (r < 0)
                        goto out;
                    if (r)
                        o.len = start;  /* undo the prefix */
                    else if (o.len - start == (Py_ssize_t)pn + 1) {
                        /* nothing but the prefix: its blank is the line's trailing one */
                        o.p[o.len - 2] = '\n';
                        o.len--;
                    }
                }
                if (r == 0) {
                    count++;
                } else {
                    PyObject *res, *payload = PyBytes_FromStringAndSize((const char *)pl, plen);
                    if (!payload)
                        goto out;
                    res = PyObject_CallFunction(fallback, "sIN", kinds[k], (unsigned)pid,
                                                payload);
                    if (!res)
                        goto out;
                    if (res != Py_None) {
                        Py_ssize_t tn;
                        const char *ts = PyUnicode_AsUTF8AndSize(res, &tn);
                        if (!ts || ob_reserve(&o, tn) < 0) { Py_DECREF(res); goto out; }
                        memcpy(o.p + o.len, ts, tn);
                        o.len += tn;
                        count++;
                    }
                    Py_DECREF(res);
                }
            }
            off += (mlen + 3) & ~3u;
        }
    }
    ret = Py_BuildValue("(Nni)", PyUnicode_DecodeUTF8(o.p, o.len, "strict"), count, err);
out:
    Py_XDECREF(owner);
    PyMem_Free(o.p);
    return ret;
}

/* ---- decode_entry: payload -> ctools.model.Entry, without Python-level code ----------- */

/* Slot offsets of the model classes, looked up once from their member descriptors. */
#define MAX_SLOTS 64
typedef struct {
    PyTypeObject *type;
    Py_ssize_t n;
    Py_ssize_t off[MAX_SLOTS];
    const char *names[MAX_SLOTS];
} slotmap;

static slotmap ENTRY, TUPLE, NATRANGE;
static int model_ready = 0;

static int load_slots(PyObject *model, const char *clsname, slotmap *m)
{
    PyObject *cls = PyObject_GetAttrString(model, clsname), *slots = NULL;
    Py_ssize_t i;
    if (!cls)
        return -1;
    slots = PyObject_GetAttrString(cls, "__slots__");
    if (!slots || !PyTuple_Check(slots) || PyTuple_GET_SIZE(slots) > MAX_SLOTS) {
        PyErr_Format(PyExc_TypeError, "%s.__slots__ must be a tuple", clsname);
        goto fail;
    }
    m->n = PyTuple_GET_SIZE(slots);
    for (i = 0; i < m->n; i++) {
        PyObject *name = PyTuple_GET_ITEM(slots, i);
        PyObject *d = PyObject_GetAttr(cls, name);
        if (!d)
            goto fail;
        if (Py_TYPE(d) != &PyMemberDescr_Type) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", clsname, name);
            goto fail;
        }
        m->off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        m->names[i] = PyUnicode_AsUTF8(name);
        Py_DECREF(d);
    }
    m->type = (PyTypeObject *)cls;  /* keeps the reference */
    Py_DECREF(slots);
    return 0;
fail:
    Py_XDECREF(slots);
    Py_DECREF(cls);
    return -1;
}

static Py_ssize_t slot_index(const slotmap *m, const char *name)
{
    Py_ssize_t i;
    for (i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], name))
            return i;
    return -1;
}

/* indices of the slots we fill */
enum { T_FAMILY, T_SRC, T_DST, T_PROTO, T_SPORT, T_DPORT, T_ITYPE, T_ICODE, T_IID, T_ZONE,
       T_COUNT };
static const char *const TUPLE_FIELDS[T_COUNT] = {"family", "src", "dst", "proto", "sport",
    "dport", "icmp_type", "icmp_code", "icmp_id", "zone"};
enum { N_MIN_IP, N_MAX_IP, N_MIN_PORT, N_MAX_PORT, N_COUNT };
static const char *const NAT_FIELDS[N_COUNT] = {"min_ip", "max_ip", "min_port", "max_port"};
enum { E_ORIG, E_REPLY, E_MASTER, E_STATUS, E_TIMEOUT, E_MARK, E_MARK_MASK, E_SECMARK,
       E_SECCTX, E_ZONE, E_USE, E_ID, E_OP, E_OB, E_RP, E_RB, E_TCP_STATE, E_WS_O, E_WS_R,
       E_TF_O, E_TF_R, E_SCTP_STATE, E_VT_O, E_VT_R, E_DCCP_STATE, E_DCCP_ROLE, E_DCCP_SEQ,
       E_HELPER, E_NAT_SRC, E_NAT_DST, E_SEQ_O, E_SEQ_R, E_TS_START, E_TS_STOP, E_LABELS,
       E_LABELS_MASK, E_SYNPROXY, E_STATUS_MASK, E_TS_EVENT, E_COUNT };
static const char *const ENTRY_FIELDS[E_COUNT] = {"orig", "reply", "master", "status",
    "timeout", "mark", "mark_mask", "secmark", "secctx", "zone", "use", "id", "orig_packets",
    "orig_bytes", "reply_packets", "reply_bytes", "tcp_state", "tcp_wscale_orig",
    "tcp_wscale_reply", "tcp_flags_orig", "tcp_flags_reply", "sctp_state", "sctp_vtag_orig",
    "sctp_vtag_reply", "dccp_state", "dccp_role", "dccp_handshake_seq", "helper", "nat_src",
    "nat_dst", "seq_adj_orig", "seq_adj_reply", "timestamp_start", "timestamp_stop",
    "labels", "labels_mask", "synproxy", "status_mask", "timestamp_event"};
static Py_ssize_t T_OFF[T_COUNT], N_OFF[N_COUNT], E_OFF[E_COUNT];

static int model_init(void)
{
    PyObject *model;
    int i;
    if (model_ready)
        return 0;
    model = PyImport_ImportModule("ctools.model");
    if (!model)
        return -1;
    if (load_slots(model, "Entry", &ENTRY) || load_slots(model, "Tuple", &TUPLE)
            || load_slots(model, "NatRange", &NATRANGE)) {
        Py_DECREF(model);
        return -1;
    }
    Py_DECREF(model);
    for (i = 0; i < T_COUNT; i++)
        if ((T_OFF[i] = slot_index(&TUPLE, TUPLE_FIELDS[i])) < 0) goto missing;
    for (i = 0; i < N_COUNT; i++)
        if ((N_OFF[i] = slot_index(&NATRANGE, NAT_FIELDS[i])) < 0) goto missing;
    for (i = 0; i < E_COUNT; i++)
        if ((E_OFF[i] = slot_index(&ENTRY, ENTRY_FIELDS[i])) < 0) goto missing;
    for (i = 0; i < T_COUNT; i++) T_OFF[i] = TUPLE.off[T_OFF[i]];
    for (i = 0; i < N_COUNT; i++) N_OFF[i] = NATRANGE.off[N_OFF[i]];
    for (i = 0; i < E_COUNT; i++) E_OFF[i] = ENTRY.off[E_OFF[i]];
    model_ready = 1;
    return 0;
missing:
    PyErr_SetString(PyExc_TypeError, "ctools.model changed: a field is missing");
    return -1;
}

/* A fresh instance with every slot None. */
static PyObject *new_obj(const slotmap *m)
{
    PyObject *o = m->type->tp_alloc(m->type, 0);
    Py_ssize_t i;
    if (!o)
        return NULL;
    for (i = 0; i < m->n; i++) {
        PyObject **slot = (PyObject **)((char *)o + m->off[i]);
        *slot = Py_NewRef(Py_None);
    }
    return o;
}

/* Replace a slot's value; steals `v`; NULL v = error already set. */
static int set_slot(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject **slot = (PyObject **)((char *)o + off);
    PyObject *old = *slot;
    if (!v)
        return -1;
    *slot = v;
    Py_XDECREF(old);
    return 0;
}

static PyObject *addr_str(int v6, const unsigned char *a)
{
    char tmp[64];
    char *end = put_addr(tmp, v6, a);
    return PyUnicode_FromStringAndSize(tmp, end - tmp);
}

static PyObject *u(unsigned long long v) { return PyLong_FromUnsignedLongLong(v); }

/* NULL + no exception = malformed (the caller returns None); NULL + exception = error */
static PyObject *build_tuple(const unsigned char *b, Py_ssize_t off, Py_ssize_t end, int family)
{
    ctuple t;
    PyObject *o;
    if (parse_tuple(b, off, end, family, &t))
        return NULL;
    o = new_obj(&TUPLE);
    if (!o)
        return NULL;
    if (set_slot(o, T_OFF[T_FAMILY], u((unsigned)t.family))
        || (t.has_src && set_slot(o, T_OFF[T_SRC], addr_str(t.src_v6, t.src)))
        || (t.has_dst && set_slot(o, T_OFF[T_DST], addr_str(t.dst_v6, t.dst)))
        || (t.has_proto && set_slot(o, T_OFF[T_PROTO], u(t.proto)))
        || (t.has_sport && set_slot(o, T_OFF[T_SPORT], u(t.sport)))
        || (t.has_dport && set_slot(o, T_OFF[T_DPORT], u(t.dport)))
        || (t.has_itype && set_slot(o, T_OFF[T_ITYPE], u(t.itype)))
        || (t.has_icode && set_slot(o, T_OFF[T_ICODE], u(t.icode)))
        || (t.has_iid && set_slot(o, T_OFF[T_IID], u(t.iid)))
        || (t.has_zone && set_slot(o, T_OFF[T_ZONE], u(t.zone)))) {
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

static PyObject *build_string(const unsigned char *b, Py_ssize_t s, Py_ssize_t n)
{
    Py_ssize_t i = s;
    while (i < n && b[i])
        i++;
    return PyUnicode_DecodeUTF8((const char *)b + s, i - s, "surrogateescape");
}

/* The Python decoder's dict-based walk keeps the last of duplicate attributes; so do we. */
#define MALFORMED do { goto malformed; } while (0)

static PyObject *build_nat(const unsigned char *b, Py_ssize_t off, Py_ssize_t end)
{
    PyObject *r;
    if (parse_nat(b, off, end))
        return NULL;
    r = new_obj(&NATRANGE);
    if (!r)
        return NULL;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        const unsigned char *v = b + off + 4;
        int err = 0;
        if (ty == 1 || ty == 2)
            err = set_slot(r, N_OFF[ty == 1 ? N_MIN_IP : N_MAX_IP], addr_str(0, v));
        else if (ty == 4 || ty == 5)
            err = set_slot(r, N_OFF[ty == 4 ? N_MIN_IP : N_MAX_IP], addr_str(1, v));
        else if (ty == 3) {
            Py_ssize_t p = off + 4, n = off + ln;
            for (; p + 4 <= n && !err; p = (p + attr_len(b + p) + 3) & ~(Py_ssize_t)3) {
                unsigned t2 = attr_type(b + p);
                if (t2 == 1 || t2 == 2)
                    err = set_slot(r, N_OFF[t2 == 1 ? N_MIN_PORT : N_MAX_PORT],
                                   u(get16(b + p + 4)));
            }
        }
        if (err) { Py_DECREF(r); return NULL; }
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    return r;
}

static PyObject *build_triplet(const unsigned char *b, Py_ssize_t off, Py_ssize_t end)
{
    static const unsigned need[4] = {0, 4, 4, 4};
    PyObject *v[3] = {NULL, NULL, NULL}, *t;
    int i;
    if (check_members(b, off, end, need, 4))
        return NULL;
    for (; off + 4 <= end; off = (off + attr_len(b + off) + 3) & ~(Py_ssize_t)3) {
        unsigned ty = attr_type(b + off);
        if (ty >= 1 && ty <= 3) {
            Py_XDECREF(v[ty - 1]);
            v[ty - 1] = u(get32(b + off + 4));
            if (!v[ty - 1]) goto fail;
        }
    }
    t = PyTuple_New(3);
    if (!t) goto fail;
    for (i = 0; i < 3; i++)
        PyTuple_SET_ITEM(t, i, v[i] ? v[i] : Py_NewRef(Py_None));
    return t;
fail:
    for (i = 0; i < 3; i++) Py_XDECREF(v[i]);
    return NULL;
}

static PyObject *build_labels(const unsigned char *b, Py_ssize_t s, Py_ssize_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* host-order u32 words, word i = bits 32i..: on little endian that is one LE integer */
    return _PyLong_FromByteArray(b + s, n - s, 1, 0);
#else
    return NULL;
#endif
}

static int put_counters(PyObject *e, const unsigned char *b, Py_ssize_t s, Py_ssize_t n,
                        int ip, int ib)
{
    int hp = 0, hb = 0;
    uint64_t p = 0, by = 0;
    if (parse_counters(b, s, n, &hp, &p, &hb, &by))
        return 1;
    if (set_slot(e, E_OFF[ip], hp ? u(p) : Py_NewRef(Py_None)))
        return -1;
    return set_slot(e, E_OFF[ib], hb ? u(by) : Py_NewRef(Py_None));
}

static int put_protoinfo(PyObject *e, const unsigned char *b, Py_ssize_t off, Py_ssize_t end)
{
    centry scratch;
    memset(&scratch, 0, sizeof(scratch));
    Py_ssize_t at;
    if (parse_protoinfo(b, off, end, &scratch))  /* validates every member's size */
        return 1;
    for (at = off; at + 4 <= end; at = (at + attr_len(b + at) + 3) & ~(Py_ssize_t)3) {
        unsigned ty = attr_type(b + at);
        Py_ssize_t p = at + 4, n = at + attr_len(b + at);
        if (!last_of_type(b, at, end))
            continue;
        for (; p + 4 <= n; p = (p + attr_len(b + p) + 3) & ~(Py_ssize_t)3) {
            unsigned t2 = attr_type(b + p);
            const unsigned char *v = b + p + 4;
            int slot = -1;
            PyObject *val = NULL;
            if (ty == 1) {
                switch (t2) {
                case 1: slot = E_TCP_STATE; val = u(v[0]); break;
                case 2: slot = E_WS_O; val = u(v[0]); break;
                case 3: slot = E_WS_R; val = u(v[0]); break;
                case 4: case 5:
                    slot = t2 == 4 ? E_TF_O : E_TF_R;
                    val = Py_BuildValue("(ii)", v[0], v[1]);
                    break;
                }
            } else if (ty == 3) {
                switch (t2) {
                case 1: slot = E_SCTP_STATE; val = u(v[0]); break;
                case 2: slot = E_VT_O; val = u(get32(v)); break;
                case 3: slot = E_VT_R; val = u(get32(v)); break;
                }
            } else if (ty == 2) {
                switch (t2) {
                case 1: slot = E_DCCP_STATE; val = u(v[0]); break;
                case 2: slot = E_DCCP_ROLE; val = u(v[0]); break;
                case 3: slot = E_DCCP_SEQ; val = u(get64(v)); break;
                }
            }
            if (slot >= 0 && set_slot(e, E_OFF[slot], val))
                return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(decode_entry_doc,
"decode_entry(payload) -> Entry | None\n\n"
"The same Entry as ctools.netlink.codec's Python decoder, or None when the payload is\n"
"malformed (the Python decoder then raises the precise CodecError).");

static PyObject *decode_entry(PyObject *self, PyObject *arg)
{
    static const unsigned ts_need[3] = {0, 8, 8};
    Py_buffer view;
    PyObject *e = NULL;
    const unsigned char *b;
    Py_ssize_t end, off = 4;
    int family;
    (void)self;
    if (!model_ready && model_init() < 0)
        return NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    b = view.buf;
    end = view.len;
    if (end < 4)
        goto malformed;
    family = b[0];
    e = new_obj(&ENTRY);
    if (!e)
        goto error;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        Py_ssize_t s = off + 4, nxt = off + ln;
        const unsigned char *v = b + s;
        int slot = -1, r;
        PyObject *val = NULL;
        if (ln < 4 || nxt > end)
            goto malformed;
        switch (ty) {
        case 1: case 2: case 14:
            slot = ty == 1 ? E_ORIG : ty == 2 ? E_REPLY : E_MASTER;
            val = build_tuple(b, s, nxt, family);
            if (!val) { if (PyErr_Occurred()) goto error; goto malformed; }
            break;
        case 3: case 7: case 8: case 11: case 12: case 17: case 21: case 26:
            if (ln != 8) goto malformed;
            slot = ty == 3 ? E_STATUS : ty == 7 ? E_TIMEOUT : ty == 8 ? E_MARK
                 : ty == 11 ? E_USE : ty == 12 ? E_ID : ty == 17 ? E_SECMARK
                 : ty == 21 ? E_MARK_MASK : E_STATUS_MASK;
            val = u(get32(v));
            break;
        case 27:
            if (ln != 12) goto malformed;
            slot = E_TS_EVENT; val = u(get64(v));
            break;
        case 18:
            if (ln != 6 && ln != 8) goto malformed;
            slot = E_ZONE; val = u(get16(v));
            break;
        case 4:
            r = put_protoinfo(e, b, s, nxt);
            if (r < 0) goto error;
            if (r) goto malformed;
            break;
        case 9: case 10:
            r = put_counters(e, b, s, nxt, ty == 9 ? E_OP : E_RP, ty == 9 ? E_OB : E_RB);
            if (r < 0) goto error;
            if (r) goto malformed;
            break;
        case 5: case 19: {
            Py_ssize_t stop = 0, h;
            if (check_nest(b, s, nxt)) goto malformed;
            h = find_attr(b, s, nxt, 1, &stop);
            if (h >= 0) {
                slot = ty == 5 ? E_HELPER : E_SECCTX;
                val = build_string(b, h, stop);
            }
            break;
        }
        case 6: case 13:
            slot = ty == 6 ? E_NAT_SRC : E_NAT_DST;
            val = build_nat(b, s, nxt);
            if (!val) { if (PyErr_Occurred()) goto error; goto malformed; }
            break;
        case 15: case 16: case 24:
            slot = ty == 15 ? E_SEQ_O : ty == 16 ? E_SEQ_R : E_SYNPROXY;
            val = build_triplet(b, s, nxt);
            if (!val) { if (PyErr_Occurred()) goto error; goto malformed; }
            break;
        case 20: {
            Py_ssize_t p;
            if (check_members(b, s, nxt, ts_need, 3)) goto malformed;
            for (p = s; p + 4 <= nxt; p = (p + attr_len(b + p) + 3) & ~(Py_ssize_t)3) {
                unsigned t2 = attr_type(b + p);
                if ((t2 == 1 || t2 == 2)
                        && set_slot(e, E_OFF[t2 == 1 ? E_TS_START : E_TS_STOP],
                                    u(get64(b + p + 4))))
                    goto error;
            }
            break;
        }
        case 22: case 23:
            if ((ln - 4) % 4) goto malformed;
            slot = ty == 22 ? E_LABELS : E_LABELS_MASK;
            val = build_labels(b, s, nxt);
            if (!val) { if (PyErr_Occurred()) goto error; goto malformed; }
            break;
        default:
            break;
        }
        if (slot >= 0 && set_slot(e, E_OFF[slot], val))
            goto error;
        off = (nxt + 3) & ~(Py_ssize_t)3;
    }
    PyBuffer_Release(&view);
    return e;
malformed:
    Py_XDECREF(e);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    Py_XDECREF(e);
    PyBuffer_Release(&view);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * create_line: the -R fast path of ctools.cli._ct_fastline.fast_create, in C.
 *
 * Same strict grammar, same result: (add?, attrs) for a plain IPv4 tcp/udp -I/-A line,
 * None for anything else (the caller then uses the Python parsers).
 */
enum { K_S, K_D, K_R, K_Q, K_P, K_T, K_U, K_M, K_W, K_SP, K_DP, K_RSP, K_RDP, K_ST, K_COUNT };

typedef struct { const char *p; Py_ssize_t n; } ltok;

static int tok_eq(ltok t, const char *s)
{
    size_t n = strlen(s);
    return (size_t)t.n == n && memcmp(t.p, s, n) == 0;
}

static const struct { const char *name; int key; int proto_opt; } LINE_OPTS[] = {
    {"-s", K_S, 0}, {"--src", K_S, 0}, {"--orig-src", K_S, 0},
    {"-d", K_D, 0}, {"--dst", K_D, 0}, {"--orig-dst", K_D, 0},
    {"-r", K_R, 0}, {"--reply-src", K_R, 0}, {"-q", K_Q, 0}, {"--reply-dst", K_Q, 0},
    {"-p", K_P, 0}, {"--protonum", K_P, 0}, {"-t", K_T, 0}, {"--timeout", K_T, 0},
    {"-u", K_U, 0}, {"--status", K_U, 0}, {"-m", K_M, 0}, {"--mark", K_M, 0},
    {"-w", K_W, 0}, {"--zone", K_W, 0},
    {"--sport", K_SP, 1}, {"--orig-port-src", K_SP, 1}, {"--dport", K_DP, 1},
    {"--orig-port-dst", K_DP, 1}, {"--reply-port-src", K_RSP, 1},
    {"--reply-port-dst", K_RDP, 1}, {"--state", K_ST, 2},
};

/* decimal without leading zeros, at most max */
static int line_dec(ltok t, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (t.n < 1 || t.n > 10 || (t.n > 1 && t.p[0] == '0'))
        return 0;
    for (Py_ssize_t i = 0; i < t.n; i++) {
        if (t.p[i] < '0' || t.p[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(t.p[i] - '0');
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

/* dotted quad, each part 0..255 without leading zeros */
static int line_ipv4(ltok t, unsigned char out[4])
{
    Py_ssize_t i = 0;
    for (int part = 0; part < 4; part++) {
        Py_ssize_t start = i;
        unsigned v = 0;
        while (i < t.n && t.p[i] >= '0' && t.p[i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned)(t.p[i++] - '0');
        Py_ssize_t len = i - start;
        if (len == 0 || v > 255 || (len > 1 && t.p[start] == '0'))
            return 0;
        out[part] = (unsigned char)v;
        if (part < 3) {
            if (i >= t.n || t.p[i] != '.')
                return 0;
            i++;
        }
    }
    return i == t.n;
}

static const struct { const char *name; uint32_t bit; } LINE_STATUS[] = {
    {"ASSURED", 4}, {"SEEN_REPLY", 2}, {"UNSET", 0}, {"FIXED_TIMEOUT", 0x400},
    {"EXPECTED", 1}, {"OFFLOAD", 0x4000}, {"HW_OFFLOAD", 0x8000},
};

static int line_status(ltok t, uint32_t *out)
{
    uint32_t v = 0;
    Py_ssize_t i = 0;
    for (;;) {
        Py_ssize_t start = i;
        while (i < t.n && t.p[i] != ',')
            i++;
        ltok w = {t.p + start, i - start};
        size_t k;
        for (k = 0; k < sizeof LINE_STATUS / sizeof LINE_STATUS[0]; k++)
            if (tok_eq(w, LINE_STATUS[k].name))
                break;
        if (k == sizeof LINE_STATUS / sizeof LINE_STATUS[0])
            return 0;
        v |= LINE_STATUS[k].bit;
        if (i == t.n)
            break;
        i++;   /* the comma; an empty word after it fails above */
    }
    *out = v;
    return 1;
}

static int line_tcp_state(ltok t, unsigned *out)
{
    for (unsigned k = 0; k < 10; k++)
        if (tok_eq(t, TCP_STATES[k])) {
            *out = k;
            return 1;
        }
    if (tok_eq(t, "LISTEN")) {
        *out = 9;   /* SYN_SENT2, as the C tool maps it */
        return 1;
    }
    return 0;
}

static unsigned char *put_hdr(unsigned char *w, uint16_t len, uint16_t type)
{
    memcpy(w, &len, 2);
    memcpy(w + 2, &type, 2);
    return w + 4;
}

static unsigned char *put_tuple(unsigned char *w, uint16_t type, const unsigned char *src,
                                const unsigned char *dst, unsigned proto, unsigned sport,
                                unsigned dport)
{
    w = put_hdr(w, 52, type | 0x8000);
    w = put_hdr(w, 20, 1 | 0x8000);            /* CTA_TUPLE_IP */
    w = put_hdr(w, 8, 1); memcpy(w, src, 4); w += 4;
    w = put_hdr(w, 8, 2); memcpy(w, dst, 4); w += 4;
    w = put_hdr(w, 28, 2 | 0x8000);            /* CTA_TUPLE_PROTO */
    w = put_hdr(w, 5, 1); w[0] = (unsigned char)proto; w[1] = w[2] = w[3] = 0; w += 4;
    w = put_hdr(w, 6, 2); w[0] = (unsigned char)(sport >> 8); w[1] = (unsigned char)sport;
    w[2] = w[3] = 0; w += 4;
    w = put_hdr(w, 6, 3); w[0] = (unsigned char)(dport >> 8); w[1] = (unsigned char)dport;
    w[2] = w[3] = 0; w += 4;
    return w;
}

static unsigned char *put_be32_attr(unsigned char *w, uint16_t type, uint32_t v)
{
    w = put_hdr(w, 8, type);
    uint32_t be = htonl(v);
    memcpy(w, &be, 4);
    return w + 4;
}

static PyObject *create_line(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyUnicode_Check(arg) || !PyUnicode_IS_ASCII(arg))
        Py_RETURN_NONE;
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (s == NULL)
        return NULL;
    ltok words[64];
    int n = 0;
    for (Py_ssize_t i = 0; i < len;) {
        char ch = s[i];
        if (ch == ' ' || ch == '\t' || ch == '\n') {
            i++;
            continue;
        }
        Py_ssize_t start = i;
        while (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') {
            if (s[i] < '!' || s[i] > '~' || s[i] == '"')
                Py_RETURN_NONE;
            i++;
        }
        if (n == 60)
            Py_RETURN_NONE;
        words[n].p = s + start;
        words[n].n = i - start;
        n++;
    }
    if (n < 2)
        Py_RETURN_NONE;
    int add;
    if (tok_eq(words[0], "-I") || tok_eq(words[0], "--create"))
        add = 0;
    else if (tok_eq(words[0], "-A") || tok_eq(words[0], "--add"))
        add = 1;
    else
        Py_RETURN_NONE;
    ltok seen[K_COUNT];
    int have[K_COUNT] = {0};
    unsigned proto = 0;
    for (int i = 1; i < n; i += 2) {
        size_t k;
        for (k = 0; k < sizeof LINE_OPTS / sizeof LINE_OPTS[0]; k++)
            if (tok_eq(words[i], LINE_OPTS[k].name))
                break;
        if (k == sizeof LINE_OPTS / sizeof LINE_OPTS[0])
            Py_RETURN_NONE;
        /* protocol options exist only once -p named a protocol that has them */
        if (LINE_OPTS[k].proto_opt && (proto == 0 || (LINE_OPTS[k].proto_opt == 2 && proto != 6)))
            Py_RETURN_NONE;
        int key = LINE_OPTS[k].key;
        if (have[key] || i + 1 >= n)
            Py_RETURN_NONE;
        have[key] = 1;
        seen[key] = words[i + 1];
        if (key == K_P) {
            if (tok_eq(seen[key], "tcp"))
                proto = 6;
            else if (tok_eq(seen[key], "udp"))
                proto = 17;
            else
                Py_RETURN_NONE;
        }
    }
    unsigned char src[4], dst[4], tmp[4];
    uint64_t sport, dport, timeout, v;
    if (!have[K_S] || !have[K_D] || !have[K_SP] || !have[K_DP] || !have[K_T] || !have[K_P])
        Py_RETURN_NONE;
    if (!line_dec(seen[K_SP], 0xFFFF, &sport) || !line_dec(seen[K_DP], 0xFFFF, &dport)
            || !line_dec(seen[K_T], 0xFFFFFFFFu, &timeout) || !line_ipv4(seen[K_S], src)
            || !line_ipv4(seen[K_D], dst))
        Py_RETURN_NONE;
    if ((have[K_R] && !line_ipv4(seen[K_R], tmp)) || (have[K_Q] && !line_ipv4(seen[K_Q], tmp))
            || (have[K_RSP] && !line_dec(seen[K_RSP], 0xFFFF, &v))
            || (have[K_RDP] && !line_dec(seen[K_RDP], 0xFFFF, &v)))
        Py_RETURN_NONE;
    unsigned char buf[256], *w = buf;
    w = put_tuple(w, 1, src, dst, proto, (unsigned)sport, (unsigned)dport);
    w = put_tuple(w, 2, dst, src, proto, (unsigned)dport, (unsigned)sport);
    if (have[K_U]) {
        uint32_t status;
        if (!line_status(seen[K_U], &status))
            Py_RETURN_NONE;
        w = put_be32_attr(w, 3, status | 8);   /* CTA_STATUS, CONFIRMED kept */
    }
    if (proto == 6) {
        unsigned state;
        if (!have[K_ST] || !line_tcp_state(seen[K_ST], &state))
            Py_RETURN_NONE;
        unsigned char flags = state >= 7 ? 0x0E : 0x0A;   /* TIME_WAIT and later: +CLOSE_INIT */
        w = put_hdr(w, 32, 4 | 0x8000);      /* CTA_PROTOINFO */
        w = put_hdr(w, 28, 1 | 0x8000);      /* CTA_PROTOINFO_TCP */
        w = put_hdr(w, 5, 1); w[0] = (unsigned char)state; w[1] = w[2] = w[3] = 0; w += 4;
        w = put_hdr(w, 6, 4); w[0] = w[1] = flags; w[2] = w[3] = 0; w += 4;
        w = put_hdr(w, 6, 5); w[0] = w[1] = flags; w[2] = w[3] = 0; w += 4;
    }
    w = put_be32_attr(w, 7, (uint32_t)timeout);   /* CTA_TIMEOUT */
    if (have[K_M]) {
        if (!line_dec(seen[K_M], 0xFFFFFFFFu, &v))
            Py_RETURN_NONE;
        w = put_be32_attr(w, 8, (uint32_t)v);     /* CTA_MARK */
    }
    if (have[K_W]) {
        if (!line_dec(seen[K_W], 0xFFFF, &v))
            Py_RETURN_NONE;
        w = put_hdr(w, 6, 18);                      /* CTA_ZONE */
        w[0] = (unsigned char)(v >> 8); w[1] = (unsigned char)v; w[2] = w[3] = 0; w += 4;
    }
    return Py_BuildValue("(iy#)", add, (const char *)buf, (Py_ssize_t)(w - buf));
}

PyDoc_STRVAR(create_line_doc,
"create_line(line) -> (add, attrs) or None\n\n"
"The -R fast path: CTA_* attributes of a plain IPv4 tcp/udp -I/-A line\n"
"(same grammar and bytes as ctools.cli._ct_fastline), None for any other line.");

/* ---------------------------------------------------------------------------------------
 * delete_attrs: the CT_DELETE request for one dumped entry, from its payload's own
 * attributes (CTA_TUPLE_ORIG, then CTA_ZONE and CTA_ID when present) -- no Entry needed.
 */
PyDoc_STRVAR(delete_attrs_doc,
"delete_attrs(payload[, match]) -> bytes | None\n\n"
"CTA_TUPLE_ORIG, CTA_ZONE and CTA_ID of a conntrack payload (from nfgenmsg on), copied\n"
"in that order as the attributes of a delete request; b\"\" if the entry fails match\n"
"(as in format_dump); None if the payload has no original tuple or is malformed.");

static PyObject *delete_attrs(PyObject *self, PyObject *args)
{
    PyObject *arg, *matchobj = NULL;
    Py_buffer view;
    dmatch match;
    (void)self;
    if (!PyArg_ParseTuple(args, "O|O", &arg, &matchobj))
        return NULL;
    if (parse_match(matchobj, &match) < 0)
        return NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t end = view.len, off = 4;
    if (match.active) {
        centry e;
        int r = parse_entry(b, end, &e) ? -1 : dump_match(&match, &e);
        if (r <= 0) {
            PyBuffer_Release(&view);
            if (r < 0)
                Py_RETURN_NONE;
            return PyBytes_FromStringAndSize(NULL, 0);
        }
    }
    Py_ssize_t at[3] = {-1, -1, -1}, len[3] = {0, 0, 0};
    int bad = end < 4;
    while (!bad && off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        Py_ssize_t nxt = off + ln;
        if (ln < 4 || nxt > end) {
            bad = 1;
            break;
        }
        int slot = ty == 1 ? 0 : ty == 18 ? 1 : ty == 12 ? 2 : -1;
        if (slot >= 0) {
            at[slot] = off;
            len[slot] = ln;
        }
        off = (nxt + 3) & ~(Py_ssize_t)3;
    }
    /* zone and id have fixed sizes; the tuple must hold something */
    if (bad || at[0] < 0 || len[0] <= 4 || (at[1] >= 0 && len[1] != 6)
            || (at[2] >= 0 && len[2] != 8)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    unsigned char out[1024];
    Py_ssize_t n = 0;
    for (int i = 0; i < 3; i++) {
        if (at[i] < 0)
            continue;
        Py_ssize_t padded = (len[i] + 3) & ~(Py_ssize_t)3;
        if (n + padded > (Py_ssize_t)sizeof out) {
            PyBuffer_Release(&view);
            Py_RETURN_NONE;
        }
        memcpy(out + n, b + at[i], len[i]);
        memset(out + n + len[i], 0, padded - len[i]);
        n += padded;
    }
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)out, n);
}


/* ---- sync wire (conntrackd's protocol): a CT payload as an Entry ---------------------------
 * Attribute ids and widths of spec sync-protocol §2.4; TLV headers and most values are big
 * endian, the NAT and ICMP-id ports little endian (the C daemon's host order on x86). */
#define SYNC_ATTRS 33
static const unsigned char SYNC_WIDTH[SYNC_ATTRS] = {
    8, 32, 1, 4, 1, 4, 4, 4, 0, 0, 0, 0, 4, 4, 2, 2, 0, 1, 4, 4, 1, 1, 1, 1, 2, 1, 1, 0, 0,
    16, 16, 12, 2};     /* 0 = not handled here (master, seq adj, helper, labels) */

static unsigned le16(const unsigned char *p) { return (unsigned)p[1] << 8 | p[0]; }

static PyObject *u8v(const unsigned char *p) { return u(p[0]); }

PyDoc_STRVAR(decode_sync_ct_doc,
"decode_sync_ct(payload) -> Entry | None\n\n"
"The Entry ctools.sync.wire.decode_ct_payload returns for a conntrackd CT payload, or None\n"
"when the payload uses an attribute this path leaves to Python (master tuple, sequence\n"
"adjustment, helper, labels), repeats one, or is malformed (Python then raises).");

static PyObject *decode_sync_ct(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    const unsigned char *b, *snat_ip = NULL, *dnat_ip = NULL;
    const unsigned char *snat_port = NULL, *dnat_port = NULL;
    int snat_v6 = 0, dnat_v6 = 0;
    unsigned long long seen = 0;
    Py_ssize_t off = 0, remaining;
    PyObject *e = NULL, *o = NULL, *nat;
    if (model_init())
        return NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE))
        return NULL;
    b = view.buf;
    remaining = view.len;
    if (!(e = new_obj(&ENTRY)) || !(o = new_obj(&TUPLE)))
        goto error;
    if (set_slot(e, E_OFF[E_ORIG], Py_NewRef(o)))
        goto error;
    while (remaining > 4) {
        unsigned len = get16(b + off), id = get16(b + off + 2);
        const unsigned char *p = b + off + 4;
        Py_ssize_t step = (len + 3) & ~3u;
        int rc = 0;
        if (len > remaining || len < 4 || id >= SYNC_ATTRS || !SYNC_WIDTH[id]
                || len != SYNC_WIDTH[id] + 4u || seen >> id & 1)
            goto fallback;
        seen |= 1ull << id;
        switch (id) {
        case 0: case 1:
            rc = set_slot(o, T_OFF[T_FAMILY], u(id ? AF_INET6 : AF_INET))
                || set_slot(o, T_OFF[T_SRC], addr_str(id, p))
                || set_slot(o, T_OFF[T_DST], addr_str(id, p + (id ? 16 : 4)));
            break;
        case 2: rc = set_slot(o, T_OFF[T_PROTO], u8v(p)); break;
        case 3:
            rc = set_slot(o, T_OFF[T_SPORT], u(get16(p)))
                || set_slot(o, T_OFF[T_DPORT], u(get16(p + 2)));
            break;
        case 4: rc = set_slot(e, E_OFF[E_TCP_STATE], u8v(p)); break;
        case 5: rc = set_slot(e, E_OFF[E_STATUS], u(get32(p))); break;
        case 6: rc = set_slot(e, E_OFF[E_TIMEOUT], u(get32(p))); break;
        case 7: rc = set_slot(e, E_OFF[E_MARK], u(get32(p))); break;
        case 12: case 29: snat_ip = p; snat_v6 = id == 29; break;
        case 13: case 30: dnat_ip = p; dnat_v6 = id == 30; break;
        case 14: snat_port = p; break;
        case 15: dnat_port = p; break;
        case 17: rc = set_slot(e, E_OFF[E_SCTP_STATE], u8v(p)); break;
        case 18: rc = set_slot(e, E_OFF[E_VT_O], u(get32(p))); break;
        case 19: rc = set_slot(e, E_OFF[E_VT_R], u(get32(p))); break;
        case 20: rc = set_slot(e, E_OFF[E_DCCP_STATE], u8v(p)); break;
        case 21: rc = set_slot(e, E_OFF[E_DCCP_ROLE], u8v(p)); break;
        case 22: rc = set_slot(o, T_OFF[T_ITYPE], u8v(p)); break;
        case 23: rc = set_slot(o, T_OFF[T_ICODE], u8v(p)); break;
        case 24: rc = set_slot(o, T_OFF[T_IID], u(le16(p))); break;
        case 25: rc = set_slot(e, E_OFF[E_WS_O], u8v(p)); break;
        case 26: rc = set_slot(e, E_OFF[E_WS_R], u8v(p)); break;
        case 31:    /* on the wire: its, isn, tsoff; the Entry holds (isn, its, tsoff) */
            rc = set_slot(e, E_OFF[E_SYNPROXY],
                          Py_BuildValue("(kkk)", (unsigned long)get32(p + 4), (unsigned long)get32(p),
                                        (unsigned long)get32(p + 8)));
            break;
        case 32: rc = set_slot(e, E_OFF[E_ZONE], u(get16(p))); break;
        }
        if (rc)
            goto error;
        off += step;
        remaining -= step;
    }
    /* NAT bindings: one address/port pair per direction, min == max */
    for (int d = 0; d < 2; d++) {
        const unsigned char *ip = d ? dnat_ip : snat_ip, *port = d ? dnat_port : snat_port;
        PyObject *ipo, *porto;
        if (!ip && !port)
            continue;
        if (!(nat = new_obj(&NATRANGE)))
            goto error;
        ipo = ip ? addr_str(d ? dnat_v6 : snat_v6, ip) : Py_NewRef(Py_None);
        porto = port ? u(le16(port)) : Py_NewRef(Py_None);
        if (!ipo || !porto) {
            Py_XDECREF(ipo);
            Py_XDECREF(porto);
            Py_DECREF(nat);
            goto error;
        }
        if (set_slot(nat, N_OFF[N_MIN_IP], Py_NewRef(ipo)) || set_slot(nat, N_OFF[N_MAX_IP], ipo)
                || set_slot(nat, N_OFF[N_MIN_PORT], Py_NewRef(porto))
                || set_slot(nat, N_OFF[N_MAX_PORT], porto)
                || set_slot(e, E_OFF[d ? E_NAT_DST : E_NAT_SRC], nat))
            goto error;
    }
    Py_DECREF(o);
    PyBuffer_Release(&view);
    return e;
fallback:
    Py_XDECREF(e);
    Py_XDECREF(o);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    Py_XDECREF(e);
    Py_XDECREF(o);
    PyBuffer_Release(&view);
    return NULL;
}


/* every attribute's payload width (0: variable, bounded by SYNC_MAX_LEN as a whole TLV) */
static const unsigned char SYNC_FULL_WIDTH[SYNC_ATTRS] = {
    8, 32, 1, 4, 1, 4, 4, 4, 8, 32, 1, 4, 4, 4, 2, 2, 24, 1, 4, 4, 1, 1, 1, 1, 2, 1, 1, 0, 0,
    16, 16, 12, 2};
/* the flow's identity attributes and their place in its key (wire.scan_ct_payload) */
static const signed char SYNC_KEY_SLOT[SYNC_ATTRS] = {
    0, 0, 1, 2, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    3, 4, 5, -1, -1, -1, -1, -1, -1, -1, 6};
#define SYNC_KEY_SLOTS 7

PyDoc_STRVAR(scan_sync_ct_doc,
"scan_sync_ct(payload) -> bytes | None\n\n"
"The key ctools.sync.wire.scan_ct_payload returns for a conntrackd CT payload, or None\n"
"when the payload is malformed (Python then raises the precise error).");

static PyObject *scan_sync_ct(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    const unsigned char *b, *slot[SYNC_KEY_SLOTS] = {0};
    unsigned slot_len[SYNC_KEY_SLOTS] = {0};
    Py_ssize_t off = 0, remaining, total = 0;
    PyObject *key;
    char *w;
    int k;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE))
        return NULL;
    b = view.buf;
    remaining = view.len;
    while (remaining > 4) {
        unsigned len = get16(b + off), id = get16(b + off + 2);
        Py_ssize_t step = (len + 3) & ~3u;
        if (len > remaining || len < 4 || id >= SYNC_ATTRS)
            goto malformed;
        if (SYNC_FULL_WIDTH[id] ? len != SYNC_FULL_WIDTH[id] + 4u
                                : len > (id == 27 ? 16u : 1028u))
            goto malformed;
        if ((k = SYNC_KEY_SLOT[id]) >= 0) {
            slot[k] = b + off;
            slot_len[k] = len;
        }
        off += step;
        remaining -= step;
    }
    for (k = 0; k < SYNC_KEY_SLOTS; k++)
        total += slot_len[k];
    key = PyBytes_FromStringAndSize(NULL, total);
    if (key) {
        w = PyBytes_AS_STRING(key);
        for (k = 0; k < SYNC_KEY_SLOTS; k++) {
            if (slot_len[k])
                memcpy(w, slot[k], slot_len[k]);
            w += slot_len[k];
        }
    }
    PyBuffer_Release(&view);
    return key;
malformed:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}


/* ---- a cached sync payload straight to the CTA_* attributes of a commit's create ------------
 * Same bytes as ctools.daemon.commitfast.encode_for_create after syncmode._prepare_in_place
 * on the decoded entry, for the common flows: IPv4 TCP/UDP with ports and nothing but state,
 * status, timeout, mark, window scales (and an all-zero SYN proxy). */
PyDoc_STRVAR(commit_attrs_doc,
"commit_attrs(payload, age, commit_timeout, liberal) -> bytes | None\n\n"
"Create attributes of a cached CT payload (see ctools.daemon.syncmode), or None when the\n"
"flow needs the general path (then nothing differs but the speed).");

static PyObject *commit_attrs(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer view;
    double age;
    unsigned long commit_timeout, status = 0, timeout = 0, mark = 0;
    int liberal, has_timeout = 0, has_mark = 0, has_state = 0, has_wo = 0, has_wr = 0;
    unsigned proto = 0, state = 0, wo = 0, wr = 0;
    const unsigned char *b, *addr = NULL, *ports = NULL;
    unsigned long long seen = 0;
    Py_ssize_t off = 0, remaining;
    unsigned char out[256], *w = out;
    long left;
    if (!PyArg_ParseTuple(args, "y*dkp", &view, &age, &commit_timeout, &liberal))
        return NULL;
    b = view.buf;
    remaining = view.len;
    while (remaining > 4) {
        unsigned len = get16(b + off), id = get16(b + off + 2);
        const unsigned char *p = b + off + 4;
        Py_ssize_t step = (len + 3) & ~3u;
        if (len > remaining || len < 4 || id >= SYNC_ATTRS || seen >> id & 1
                || !SYNC_FULL_WIDTH[id] || len != SYNC_FULL_WIDTH[id] + 4u)
            goto general;
        seen |= 1ull << id;
        switch (id) {
        case 0: addr = p; break;
        case 2: proto = p[0]; break;
        case 3: ports = p; break;
        case 4: state = p[0]; has_state = 1; break;
        case 5: status = get32(p); break;
        case 6: timeout = get32(p); has_timeout = 1; break;
        case 7: mark = get32(p); has_mark = 1; break;
        case 25: wo = p[0]; has_wo = 1; break;
        case 26: wr = p[0]; has_wr = 1; break;
        case 31:
            if (get32(p) || get32(p + 4) || get32(p + 8))
                goto general;
            break;
        default:
            goto general;
        }
        off += step;
        remaining -= step;
    }
    if (!addr || !ports || (proto != 6 && proto != 17))
        goto general;
    w = put_tuple(w, 1, addr, addr + 4, proto, get16(ports), get16(ports + 2));
    w = put_tuple(w, 2, addr + 4, addr, proto, get16(ports + 2), get16(ports));
    w = put_be32_attr(w, 3, (uint32_t)((status | 0x8) & ~0x1ul));     /* CONFIRMED on, EXPECTED off */
    if (proto == 6 && (has_state || has_wo || has_wr || liberal)) {
        unsigned inner = 4 + (has_state ? 8 : 0) + (has_wo ? 8 : 0) + (has_wr ? 8 : 0)
                         + (liberal ? 16 : 0);
        w = put_hdr(w, inner + 4, 0x8000 | 4);          /* CTA_PROTOINFO */
        w = put_hdr(w, inner, 0x8000 | 1);              /* CTA_PROTOINFO_TCP */
        if (has_state) { w = put_hdr(w, 5, 1); *w = (unsigned char)state; memset(w + 1, 0, 3); w += 4; }
        if (has_wo) { w = put_hdr(w, 5, 2); *w = (unsigned char)wo; memset(w + 1, 0, 3); w += 4; }
        if (has_wr) { w = put_hdr(w, 5, 3); *w = (unsigned char)wr; memset(w + 1, 0, 3); w += 4; }
        if (liberal) {
            w = put_hdr(w, 6, 4); w[0] = 8; w[1] = 8; w[2] = w[3] = 0; w += 4;
            w = put_hdr(w, 6, 5); w[0] = 8; w[1] = 8; w[2] = w[3] = 0; w += 4;
        }
    }
    if (commit_timeout)
        timeout = commit_timeout;
    else {
        left = (long)(has_timeout ? timeout : 0) - (long)age;
        timeout = left > 0 ? (unsigned long)left : 60;
    }
    w = put_be32_attr(w, 7, (uint32_t)timeout);
    if (has_mark)
        w = put_be32_attr(w, 8, (uint32_t)mark);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)out, w - out);
general:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}


/* ---- sync wire: the CT payload of an ordinary flow (sender side) ----------------------------
 * Same bytes as ctools.sync.wire.encode_ct_payload for an IPv4 TCP/UDP flow without reply
 * tuple, master, NAT, sequence adjustment, helper, labels, SYN proxy or zone, and without
 * TCPWindowTracking; anything else returns None (the Python encoder then does it). */
enum { A_ORIG, A_REPLY, A_MASTER, A_NAT_SRC, A_NAT_DST, A_SEQ_O, A_HELPER, A_LABELS,
       A_SYNPROXY, A_ZONE, A_STATUS, A_TCP_STATE, A_TIMEOUT, A_MARK, A_FAMILY, A_SRC, A_DST,
       A_PROTO, A_SPORT, A_DPORT, A_COUNT };
static const char *const ATTR_NAMES[A_COUNT] = {"orig", "reply", "master", "nat_src",
    "nat_dst", "seq_adj_orig", "helper", "labels", "synproxy", "zone", "status", "tcp_state",
    "timeout", "mark", "family", "src", "dst", "proto", "sport", "dport"};
static PyObject *ATTR_STR[A_COUNT];

static unsigned char *put_sync_tlv(unsigned char *w, unsigned len, unsigned id)
{
    w[0] = (unsigned char)(len >> 8); w[1] = (unsigned char)len;
    w[2] = (unsigned char)(id >> 8); w[3] = (unsigned char)id;
    return w + 4;
}

static unsigned char *put_sync_u32(unsigned char *w, unsigned id, unsigned long v)
{
    w = put_sync_tlv(w, 8, id);
    w[0] = (unsigned char)(v >> 24); w[1] = (unsigned char)(v >> 16);
    w[2] = (unsigned char)(v >> 8); w[3] = (unsigned char)v;
    return w + 4;
}

/* 1: set (value in *v, masked to 32 bits), 0: None, -1: not an int / error (fallback) */
static int get_u32(PyObject *o, int name, unsigned long *v)
{
    PyObject *x = PyObject_GetAttr(o, ATTR_STR[name]);
    if (!x) { PyErr_Clear(); return -1; }
    if (x == Py_None) { Py_DECREF(x); return 0; }
    if (!PyLong_Check(x)) { Py_DECREF(x); return -1; }
    *v = PyLong_AsUnsignedLongMask(x) & 0xFFFFFFFFul;
    Py_DECREF(x);
    if (PyErr_Occurred()) { PyErr_Clear(); return -1; }
    return 1;
}

/* same, but the value must lie in [0, max] unmasked (Python would raise otherwise) */
static int get_small(PyObject *o, int name, unsigned long max, unsigned long *v)
{
    PyObject *x = PyObject_GetAttr(o, ATTR_STR[name]);
    long long n;
    if (!x) { PyErr_Clear(); return -1; }
    if (x == Py_None) { Py_DECREF(x); return 0; }
    if (!PyLong_Check(x)) { Py_DECREF(x); return -1; }
    n = PyLong_AsLongLong(x);
    Py_DECREF(x);
    if (n == -1 && PyErr_Occurred()) { PyErr_Clear(); return -1; }
    if (n < 0 || (unsigned long long)n > max) return -1;
    *v = (unsigned long)n;
    return 1;
}

/* is the attribute absent (None; for helper/labels/zone: also falsy, as Python tests them)? */
static int absent(PyObject *o, int name, int falsy_ok)
{
    PyObject *x = PyObject_GetAttr(o, ATTR_STR[name]);
    int r;
    if (!x) { PyErr_Clear(); return 0; }
    r = x == Py_None;
    if (!r && falsy_ok) {
        r = PyObject_Not(x);
        if (r < 0) { PyErr_Clear(); r = 0; }
    }
    Py_DECREF(x);
    return r;
}

PyDoc_STRVAR(encode_sync_ct_doc,
"encode_sync_ct(entry, window_tracking, commit_timeout) -> bytes | None\n\n"
"ctools.sync.wire.encode_ct_payload for the ordinary flows, or None (see the source).");

static PyObject *encode_sync_ct(PyObject *self, PyObject *args)
{
    PyObject *e, *o = NULL, *src = NULL, *dst = NULL;
    int window_tracking, commit_timeout, i, r;
    unsigned long fam = 0, status = 0, proto = 0, sport = 0, dport = 0, state = 0;
    unsigned long timeout = 0, mark = 0;
    int has_status, has_proto, has_sport, has_dport, has_state, has_timeout, has_mark;
    unsigned char out[64], *w = out;
    const char *a;
    (void)self;
    if (!PyArg_ParseTuple(args, "Opp", &e, &window_tracking, &commit_timeout))
        return NULL;
    if (!ATTR_STR[0])
        for (i = 0; i < A_COUNT; i++)
            if (!(ATTR_STR[i] = PyUnicode_InternFromString(ATTR_NAMES[i])))
                return NULL;
    if (window_tracking)
        Py_RETURN_NONE;
    for (i = A_REPLY; i <= A_SYNPROXY; i++)
        if (!absent(e, i, i == A_HELPER || i == A_LABELS))
            Py_RETURN_NONE;
    if (!absent(e, A_ZONE, 1))
        Py_RETURN_NONE;
    if (!(o = PyObject_GetAttr(e, ATTR_STR[A_ORIG]))) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (o == Py_None || get_small(o, A_FAMILY, 255, &fam) != 1 || fam != AF_INET)
        goto general;
    if ((has_proto = get_small(o, A_PROTO, 255, &proto)) != 1 || (proto != 6 && proto != 17))
        goto general;
    if ((has_sport = get_small(o, A_SPORT, 0xFFFF, &sport)) < 0
            || (has_dport = get_small(o, A_DPORT, 0xFFFF, &dport)) < 0
            || (has_status = get_u32(e, A_STATUS, &status)) < 0
            || (has_timeout = get_u32(e, A_TIMEOUT, &timeout)) < 0
            || (has_mark = get_u32(e, A_MARK, &mark)) < 0)
        goto general;
    has_state = 0;
    if (proto == 6 && (has_state = get_small(e, A_TCP_STATE, 255, &state)) < 0)
        goto general;
    src = PyObject_GetAttr(o, ATTR_STR[A_SRC]);
    dst = PyObject_GetAttr(o, ATTR_STR[A_DST]);
    if (!src || !dst || !PyUnicode_Check(src) || !PyUnicode_Check(dst)) {
        PyErr_Clear();
        goto general;
    }
    w = put_sync_tlv(w, 12, 0);
    for (i = 0; i < 2; i++) {
        if (!(a = PyUnicode_AsUTF8(i ? dst : src))) { PyErr_Clear(); goto general; }
        r = inet_pton(AF_INET, a, w);
        if (r != 1)
            goto general;
        w += 4;
    }
    if (has_status)
        w = put_sync_u32(w, 5, status);
    w = put_sync_tlv(w, 5, 2); w[0] = (unsigned char)proto; w[1] = w[2] = w[3] = 0; w += 4;
    if (has_sport || has_dport) {
        w = put_sync_tlv(w, 8, 3);
        w[0] = (unsigned char)(sport >> 8); w[1] = (unsigned char)sport;
        w[2] = (unsigned char)(dport >> 8); w[3] = (unsigned char)dport; w += 4;
    }
    if (has_state) {
        w = put_sync_tlv(w, 5, 4); w[0] = (unsigned char)state; w[1] = w[2] = w[3] = 0; w += 4;
    }
    if (has_timeout && !commit_timeout)
        w = put_sync_u32(w, 6, timeout);
    if (has_mark)
        w = put_sync_u32(w, 7, mark);
    Py_DECREF(o);
    Py_DECREF(src);
    Py_DECREF(dst);
    return PyBytes_FromStringAndSize((const char *)out, w - out);
general:
    Py_XDECREF(o);
    Py_XDECREF(src);
    Py_XDECREF(dst);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode_entry", decode_entry, METH_O, decode_entry_doc},
    {"format_events", format_events, METH_VARARGS, format_events_doc},
    {"format_dump", format_dump, METH_VARARGS, format_dump_doc},
    {"format_payload", format_payload, METH_VARARGS, format_payload_doc},
    {"create_line", create_line, METH_O, create_line_doc},
    {"delete_attrs", delete_attrs, METH_VARARGS, delete_attrs_doc},
    {"decode_sync_ct", decode_sync_ct, METH_O, decode_sync_ct_doc},
    {"scan_sync_ct", scan_sync_ct, METH_O, scan_sync_ct_doc},
    {"commit_attrs", commit_attrs, METH_VARARGS, commit_attrs_doc},
    {"encode_sync_ct", encode_sync_ct, METH_VARARGS, encode_sync_ct_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ctfast",
    "Optional C accelerator of ctools' conntrack listing (see ctools.netlink.fast).",
    -1, methods, NULL, NULL, NULL, NULL,
};

/* Bumped whenever the Python side needs something new: a stale build is then ignored. */
#define CTFAST_ABI 2

PyMODINIT_FUNC PyInit__ctfast(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", CTFAST_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
