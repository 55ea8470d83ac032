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
    if (check_nest(b, off, end))
        return -1;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        const unsigned char *v = b + off + 4;
        if (ty == 1 || ty == 2) {
            if (ln - 4 < 8) return -1;
            if (ty == 1) { *hp = 1; *p = get64(v); } else { *hb = 1; *by = get64(v); }
        } else if (ty == 3 || ty == 4) {
            if (ln - 4 < 4) return -1;
            if (ty == 3) { *hp = 1; *p = get32(v); } else { *hb = 1; *by = get32(v); }
        }
        off = (off + ln + 3) & ~(Py_ssize_t)3;
    }
    return 0;
}

static int parse_protoinfo(const unsigned char *b, Py_ssize_t off, Py_ssize_t end, centry *e)
{
    static const unsigned tcp_need[6] = {0, 1, 1, 1, 2, 2};
    static const unsigned sctp_need[4] = {0, 1, 4, 4};
    static const unsigned dccp_need[4] = {0, 1, 1, 8};
    if (check_nest(b, off, end))
        return -1;
    while (off + 4 <= end) {
        unsigned ln = attr_len(b + off), ty = attr_type(b + off);
        Py_ssize_t s = off + 4, n = off + ln, p;
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
        off = (n + 3) & ~(Py_ssize_t)3;
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

PyDoc_STRVAR(format_dump_doc,
"format_dump(buf, seq, flags, now, fallback) -> (text, count, done, errno)\n\n"
"Format every conntrack message of one netlink receive buffer whose sequence number\n"
"is seq (0 = any) in the one-line text format selected by the O_* bits in flags.\n"
"Payloads it does not handle are passed to fallback(payload) -> str | None (None =\n"
"skip).  done is true once NLMSG_DONE or an error was seen; errno is the error\n"
"(0 = none).  now is time.time() as an int (for delta-time), or -1.\n"
"Raises ValueError on a malformed netlink header.");

static PyObject *format_dump(PyObject *self, PyObject *args)
{
    PyObject *bufobj, *fallback, *ret = NULL;
    unsigned long seq;
    int flags;
    long long now;
    Py_buffer view;
    obuf o = {0};
    Py_ssize_t off = 0, count = 0;
    int done = 0, err = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OkiLO", &bufobj, &seq, &flags, &now, &fallback))
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
                    int r = parse_entry(pl, plen, &e) ? 1 : format_entry(&o, &e, flags, now);
                    if (r < 0)
                        goto out;
                    if (r == 0)
                        count++;
                    else if (call_fallback(fallback, bufobj, off + 16, plen, &o, &count) < 0)
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
    buf = PyMem_Malloc(bufsize);
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
    PyMem_Free(buf);
    PyMem_Free(o.p);
    return ret;
}

static PyMethodDef methods[] = {
    {"format_events", format_events, METH_VARARGS, format_events_doc},
    {"format_dump", format_dump, METH_VARARGS, format_dump_doc},
    {"format_payload", format_payload, METH_VARARGS, format_payload_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ctfast",
    "Optional C accelerator of ctools' conntrack listing (see ctools.netlink.fast).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ctfast(void)
{
    return PyModule_Create(&module);
}
